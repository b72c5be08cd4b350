"""The ``sentinel-durable`` command: inspect, replay, export and repair a spool; run a broker or the demo.

Every failure is one line on stderr and a non-zero exit code: 1 for an operational failure
(nothing delivered in time, a file in use), 2 for bad usage or configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._cli_tools import CommandError, run_broker, run_demo_command
from ._timeout import deadline_of, left_until
from .config import Config
from .errors import CannotDecrypt, SentinelError, SpoolFileBusy, SpoolFileCorrupt
from .progress import Progress
from .spool import (
    FileReport,
    inspect_file,
    new_file,
    owned_file,
    quarantined_files,
    read_dead_letters,
    read_events,
    spool_files,
)

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result: int = args.run(args)
        return result
    except CommandError as exc:
        print(f"sentinel-durable: {exc}", file=sys.stderr)
        return exc.code
    except SentinelError as exc:
        code = 2 if isinstance(exc, ValueError) else 1
        print(f"sentinel-durable: {exc}", file=sys.stderr)
        return code
    except BrokenPipeError:  # `sentinel-durable export | head`: the reader has what it wanted
        # Before OSError, whose subclass it is. Python's own flush of stdout at exit would fail
        # again and print "Exception ignored ... BrokenPipeError": point stdout at /dev/null
        # (the recipe of the Python docs, signal module, "Note on SIGPIPE").
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        print(f"sentinel-durable: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sentinel-durable: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentinel-durable", description="Inspect and replay the sentinel-durable spool; run a local broker."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(run=run)
        return sub

    def spool_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--spool-dir", type=Path, help="spool directory (default: from SENTINEL_* / the topic)")
        sub.add_argument(
            "--topic",
            help="topic, to find the default spool directory; drain and dlq requeue send to it instead of the"
            " topic each file records",
        )

    status = command("status", _status, "pending events and dead letters per spool file")
    spool_option(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")

    drain = command("drain", _drain, "deliver the spool to Kafka now, with a progress bar")
    spool_option(drain)
    drain.add_argument("--brokers", help="comma-separated bootstrap brokers (default: SENTINEL_BROKERS)")
    drain.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for delivery (default 300)")

    export = command("export", _export, "write the spooled events as JSON Lines, in spool order")
    spool_option(export)
    export.add_argument("--output", type=Path, help="file to write (default: standard output)")
    export.add_argument("--include-dead-letters", action="store_true", help="export dead letters too")

    dlq = command("dlq", _dlq, "list, requeue or purge dead letters")
    dlq.add_argument("action", choices=["list", "requeue", "purge"])
    spool_option(dlq)

    broker = command("broker", run_broker, "run an embedded Kafka-compatible broker for local development")
    broker.add_argument("--port", type=int, default=9092, help="port to listen on (default 9092)")

    demo = command("demo", run_demo_command, "show offline-first delivery end to end with an embedded broker")
    demo.add_argument("--events", type=int, default=3000, help="events per sending phase (default 3000)")
    return parser


# --- commands -------------------------------------------------------------------------------------


def _config(args: argparse.Namespace, **overrides: Any) -> Config:
    if getattr(args, "topic", None):
        overrides["topic"] = args.topic
    if getattr(args, "spool_dir", None) is not None:
        if args.spool_dir.exists() and not args.spool_dir.is_dir():
            raise CommandError(f"--spool-dir {args.spool_dir}: not a directory", code=2)
        overrides["spool_dir"] = args.spool_dir
    if getattr(args, "brokers", None):
        overrides["brokers"] = args.brokers
    return Config.from_env(**overrides)


def _existing_spool_dir(config: Config) -> Path:
    directory = config.spool_directory()
    if not directory.is_dir():
        raise CommandError(f"no spool directory at {directory}")
    return directory


def _reports(directory: Path) -> tuple[list[FileReport], list[str]]:
    reports, unreadable = [], []
    for path in spool_files(directory):
        try:
            reports.append(inspect_file(path))
        except SpoolFileCorrupt as exc:
            if path.exists():  # else its owner drained and removed it while we looked
                unreadable.append(str(exc))
    return reports, unreadable


def _status(args: argparse.Namespace) -> int:
    directory = _existing_spool_dir(_config(args))
    reports, unreadable = _reports(directory)
    quarantined = [p.name for p in quarantined_files(directory)]
    oldest = [r.oldest_pending_age_s for r in reports if r.oldest_pending_age_s is not None]
    totals: dict[str, Any] = {
        "pending": sum(r.pending for r in reports),
        "dead_letters": sum(r.dead_letters for r in reports),
        "bytes": sum(r.disk_bytes for r in reports),
        "oldest_pending_age_s": max(oldest) if oldest else None,
    }
    if args.json:
        document = {
            "spool_dir": str(directory),
            "files": [
                {
                    "file": r.path.name,
                    "pending": r.pending,
                    "dead_letters": r.dead_letters,
                    "bytes": r.disk_bytes,
                    "oldest_pending_age_s": r.oldest_pending_age_s,
                    "owner_alive": r.owner_alive,
                    "owner_pid": r.owner_pid,
                    "topic": r.topic,
                }
                for r in reports
            ],
            "total": totals,
            "quarantined": quarantined,
            "unreadable": unreadable,
        }
        print(json.dumps(document, indent=2))
        return 0
    rows = [
        [r.path.name, f"{r.pending:,}", f"{r.dead_letters:,}", _size(r.disk_bytes),
         _age(r.oldest_pending_age_s), _owner(r), r.topic if r.topic is not None else "(none recorded)"]
        for r in reports
    ]  # fmt: skip
    rows.append(["total", f"{totals['pending']:,}", f"{totals['dead_letters']:,}",
                 _size(totals["bytes"]), _age(totals["oldest_pending_age_s"]), "", ""])  # fmt: skip
    print(f"spool directory: {directory}")
    _table(["file", "pending", "dead letters", "bytes", "oldest pending", "owner", "topic"], rows)
    for name in quarantined:
        print(f"quarantined: {name}")
    for problem in unreadable:
        print(f"unreadable: {problem}")
    return 0


def _route(recorded: str | None, override: str | None, configured: str) -> tuple[str, str]:
    """Where a file's events go, and why: the topic the file records; ``--topic`` only when given."""
    if override is not None:
        if recorded == override:
            return override, "recorded in file"
        if recorded is None:
            return override, "given by --topic; the file records no topic"
        return override, f"overridden by --topic; file recorded {recorded}"
    if recorded is not None:
        return recorded, "recorded in file"
    return configured, "the configured topic; the file records no topic"


def _drain(args: argparse.Namespace) -> int:
    from .client import Client

    config = _config(args)
    directory = _existing_spool_dir(config)
    reports = _reports(directory)[0]
    busy = [r for r in reports if r.owner_alive]
    # One client per destination: each adopts the files recorded for its topic (a file that
    # records no topic is stamped with it); with --topic, a client per recorded topic sends
    # that topic's files to the one given.
    routes: dict[tuple[str, str | None], int] = {}  # (target, topic adopted) -> events its files hold
    for report in sorted(reports, key=lambda r: r.topic is not None):  # see below
        if report.owner_alive or not report.pending:
            continue
        target, why = _route(report.topic, args.topic or None, config.topic)
        print(f"{report.path.name}: delivering to topic {target} ({why})")
        # Files that record no topic first: a plain client of any topic would adopt them, so the
        # one for their (configured or given) topic must run before the others.
        route = (target, report.topic if report.topic not in (None, target) else None)
        routes[route] = routes.get(route, 0) + report.pending
    deadline = deadline_of(args.timeout)
    delivered, dead_lettered, left, last_error = True, 0, 0, None
    for (target, adopt_topic), known in (routes or {(config.topic, None): 0}).items():
        progress = _Counted(Progress("draining"), known)
        client = Client(config=config.model_copy(update={"topic": target, "spool_dir": directory}),
                        adopt_topic=adopt_topic)  # fmt: skip
        try:
            done = client.flush(left_until(deadline), progress=progress)
            progress.close()
            stats = client.stats()
        finally:
            client.close(timeout=1.0)  # what is left stays on disk
        delivered = delivered and done
        dead_lettered += stats.dead_lettered
        left += stats.spooled + stats.in_flight
        last_error = stats.last_error or last_error
        if done:
            print(f"delivered {stats.delivered:,} events to {target}")
    if delivered:
        if busy:  # README: exit 1 when a file is in use by a live process
            raise CommandError("; ".join(_owned_by(report) for report in busy))
        return 0
    if dead_lettered:
        raise CommandError(f"{dead_lettered} events were dead-lettered (see: sentinel-durable dlq list)")
    reason = f"; last error: {last_error}" if last_error else ""
    raise CommandError(f"not everything was delivered within {args.timeout:g}s: {left:,} events still spooled{reason}")


class _Counted:
    """Progress over the events the files held when the drain started (``known``): the client's
    flusher may deliver some before ``flush`` takes its mark, and those count as drained too."""

    def __init__(self, progress: Progress, known: int) -> None:
        self._progress, self._known = progress, known

    def __call__(self, settled: int, total: int) -> None:
        whole = max(self._known, total)
        self._progress(whole - (total - settled), whole)

    def close(self) -> None:
        self._progress.close()


def _owned_by(report: FileReport) -> str:
    pid = report.owner_pid if report.owner_pid is not None else "?"
    return (
        f"{report.path.name} is owned by live process {pid}: its {report.pending:,} events "
        "were not drained (that process delivers them; stop it to drain them here)"
    )


def _export(args: argparse.Namespace) -> int:
    config = _config(args)
    directory = _existing_spool_dir(config)
    cipher = config.spool_cipher()
    output = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115 - closed below
    count = 0
    try:
        for path in spool_files(directory):
            for data in read_events(path, include_dead_letters=args.include_dead_letters, cipher=cipher):
                output.write(data + b"\n")
                count += 1
    except SpoolFileCorrupt as exc:
        raise CommandError(f"cannot read {exc}") from exc
    except CannotDecrypt as exc:
        raise CommandError(str(exc)) from exc
    finally:
        if args.output:
            output.close()
        else:
            output.flush()
    print(f"exported {count:,} events", file=sys.stderr)
    return 0


def _dlq(args: argparse.Namespace) -> int:
    directory = _existing_spool_dir(_config(args))
    if args.action == "list":
        listed = 0
        for path in spool_files(directory):
            for letter in read_dead_letters(path):
                spooled = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(letter.spooled_at))
                print(f"{letter.event_id}  attempts={letter.attempts}  spooled={spooled}  error={letter.last_error}")
                listed += 1
        if not listed:
            print(f"no dead letters in {directory}", file=sys.stderr)  # stdout stays one line per letter
        return 0
    changed, busy = 0, []
    for path in spool_files(directory):
        if not read_dead_letters(path):
            continue
        try:
            with owned_file(path) as spool_file:
                if args.action == "purge":
                    changed += spool_file.purge_dead_letters()
                    continue
                # Requeued events go to the topic the file records; with --topic (another one),
                # they move to a new file recorded for that topic.
                recorded, override = spool_file.topic, args.topic or None
                if override is None or override == recorded:
                    count = spool_file.requeue_dead_letters()
                    where = (f"topic {recorded} (recorded in file)" if recorded is not None
                             else "the topic of the client that adopts the file (it records no topic)")  # fmt: skip
                else:
                    with new_file(directory, override) as moved_to:
                        count = spool_file.move_dead_letters(moved_to)
                    where = f"topic {override} ({_route(recorded, override, override)[1]})"
                print(f"{path.name}: requeued {count:,} dead letters for {where}")
                changed += count
        except SpoolFileBusy as exc:
            busy.append(str(exc))
    verb = "requeued" if args.action == "requeue" else "purged"
    print(f"{verb} {changed:,} dead letters")
    if busy:
        raise CommandError("; ".join(busy) + " (stop it, or retry once it has exited)")
    return 0


# --- formatting -----------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _owner(report: FileReport) -> str:
    if report.owner_alive:
        return f"alive (pid {report.owner_pid})" if report.owner_pid else "alive"
    return "gone"


if __name__ == "__main__":
    sys.exit(main())
