"""``sentinel-durable demo``: offline-first delivery end to end, told as a story.

An embedded broker starts behind a proxy; a sending process tracks events while the broker is
up; the network is cut and a second sender tracks as many (the events pile up on disk) and is
then killed with SIGKILL, without closing its client; a restarted sender tracks more, still
offline; the network comes back and the restarted sender's flusher drains the whole backlog,
its own and the dead sender's. The topic is then read back: every event whose ``track``
returned must be there, so the summary's "sent" is exactly three times ``events``.

The second sender is killed once it has reported its last event, not while it tracks: a kill
in the middle of a ``track`` made the count of acknowledged events depend on timing (9,001
where 9,000 was expected). Kills at random moments are the chaos suite's job (tests/chaos).

Senders are separate processes (``python -m sentinel_durable.demo sender ...``) so that one
can really be killed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .errors import SpoolFileCorrupt
from .progress import Progress
from .spool import inspect_file, spool_files
from .testing import EmbeddedBroker, wait_until

__all__ = ["run_demo"]

TOPIC = "llm.telemetry.demo"


def run_demo(events: int = 3000) -> int:
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    spool_dir = Path(tempfile.mkdtemp(prefix="sentinel-demo-"))
    say("sentinel-durable demo: nothing acknowledged is lost, whatever happens to the broker or the process.\n")
    with EmbeddedBroker(with_proxy=True) as broker:
        proxy = broker.proxy
        assert proxy is not None
        say(f"1. An embedded Kafka-compatible broker (Tansu, in memory) is up on {broker.bootstrap_servers}.")

        first = Sender(spool_dir, broker.bootstrap_servers, "online", events)
        sent = first.read_ids(events)
        first.finish()
        say(f"2. Sender #1 tracked {len(sent):,} events with the broker up; it exited and they were delivered.")

        proxy.cut()
        say("3. The network to the broker is cut: connections are dropped and refused.")
        second = Sender(spool_dir, broker.bootstrap_servers, "offline-then-killed", events)
        acknowledged = second.read_ids(events)
        second.kill()
        sent += acknowledged + second.read_remaining_ids()  # none: it had stopped tracking
        backlog = pending_now(spool_dir)
        say(
            f"4. Sender #2 tracked {len(acknowledged):,} events offline, then was killed with SIGKILL"
            " (no close(), no exit hook)."
        )
        say(f"   On disk: {backlog:,} events waiting, in {len(spool_files(spool_dir))} spool file(s).")

        third = Sender(spool_dir, broker.bootstrap_servers, "restarted", events)
        sent += third.read_ids(events)
        waiting = pending_now(spool_dir)
        say(f"5. Sender #3 (the restarted app) tracked {events:,} more, still offline: {waiting:,} waiting.")

        proxy.restore()
        say("6. The network is back. Sender #3's flusher drains the backlog, the dead sender's file included:")
        total = pending_now(spool_dir)
        progress = Progress("   draining", stream=sys.stdout)
        wait_until(lambda: _report(progress, total, pending(spool_dir)), 300, 0.1, "the backlog to drain")
        third.finish()

        records = broker.read_topic(TOPIC, expected=len(sent), timeout=60)
    found = [json.loads(record.value)["event_id"] for record in records]
    unique, acknowledged_ids = set(found), set(sent)
    lost = len(acknowledged_ids - unique)
    say(
        f"\nSummary: sent {len(acknowledged_ids):,} | delivered {len(unique & acknowledged_ids):,} | "
        f"duplicates {len(found) - len(unique):,} | lost {lost}"
    )
    extra = len(unique - acknowledged_ids)
    if extra:
        say(f"({extra} events in the topic were never reported by a sender: this is a bug, please report it.)")
    if lost:
        say("Events were lost: this is a bug, please report it.")
    return 1 if lost else 0


def say(text: str) -> None:
    print(text, flush=True)


def pending(spool_dir: Path) -> int | None:
    """Events waiting in the spool directory, read from outside;
    None when a file could not be read this time (its owner was removing it as we looked)."""
    total = 0
    for path in spool_files(spool_dir):
        try:
            report = inspect_file(path)
        except SpoolFileCorrupt:
            if path.exists():
                return None
            continue  # drained and removed by its owner while we read it
        total += report.pending
    return total


def pending_now(spool_dir: Path) -> int:
    """``pending``, looking again until every file could be read."""
    counted = wait_until(
        lambda: (n,) if (n := pending(spool_dir)) is not None else None, 30, 0.05, "the spool to be readable"
    )
    assert counted is not None  # wait_until returns only a truthy value
    return counted[0]


def _report(progress: Progress, total: int, remaining: int | None) -> bool:
    if remaining is None:
        return False  # look again
    progress(max(0, total - remaining), total)
    return remaining == 0


class Sender:
    """A sending process that prints the id of every event once ``track`` returned."""

    def __init__(self, spool_dir: Path, brokers: str, mode: str, count: int = 0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sentinel_durable.demo", "sender", str(spool_dir), brokers, mode, str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def read_ids(self, count: int) -> list[str]:
        assert self.process.stdout is not None
        ids: list[str] = []
        while len(ids) < count:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the sender exited early (status {self.process.wait()})")
            ids.append(line.strip())
        return ids

    def read_remaining_ids(self) -> list[str]:
        """After a kill: ids already in the pipe were acknowledged too."""
        assert self.process.stdout is not None
        return [line.strip() for line in self.process.stdout if line.endswith("\n")]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def finish(self) -> None:
        """Let the sender close its client (delivering what it can) and exit."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        if self.process.wait(timeout=60) != 0:
            raise RuntimeError(f"sender exited with status {self.process.returncode}")


def _sender(argv: Sequence[str]) -> int:
    """Track ``count`` events, printing each id; then wait for stdin to close (or a SIGKILL)."""
    from .client import Client

    spool_dir, brokers, mode, count = argv[0], argv[1], argv[2], int(argv[3])
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    logging.getLogger("sentinel_durable").setLevel(logging.ERROR)  # the demo tells the story
    client = Client(
        brokers=[brokers], topic=TOPIC, spool_dir=spool_dir, retry_backoff=0.05, max_retry_backoff=0.5,
        write_timeout=2.0, shutdown_timeout=30.0,
    )  # fmt: skip
    number = 0
    while number < count:
        number += 1
        event_id = client.track(
            service=f"demo-{mode}", model="gpt-4", prompt=f"question {number} from pid {os.getpid()}",
            response="answer", latency_ms=100.0 + number % 50, prompt_tokens=12, completion_tokens=30,
            cost_usd=0.0004, metadata={"mode": mode},
        )  # fmt: skip
        sys.stdout.write(event_id + "\n")
        sys.stdout.flush()  # every acknowledged id must reach the demo before a kill
    sys.stdin.read()  # until the demo closes our stdin
    client.close(timeout=30)
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["sender"]:
    sys.exit(_sender(sys.argv[2:]))
