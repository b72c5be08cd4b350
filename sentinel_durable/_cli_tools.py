"""The command line's tools for trying the SDK out: ``broker`` (the embedded Kafka-compatible
broker, Tansu in memory) and ``demo`` (offline-first delivery end to end)."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading

__all__ = ["CommandError", "run_broker", "run_demo_command"]


class CommandError(Exception):
    """A failure of a command, reported as one line, with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Stop(BaseException):
    """Raised in the main thread by SIGTERM or SIGHUP, so that ``with EmbeddedBroker`` stops the broker."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP end ``broker`` as Ctrl-C does: the child is stopped by pid before we exit."""

    def stop(signum: int, _frame: object) -> None:
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the first signal wins: the
            signal.signal(number, signal.SIG_IGN)  # broker's stop() must not be interrupted
        raise _Stop(signum)

    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, stop)


def run_broker(args: argparse.Namespace) -> int:
    from .testing import EmbeddedBroker

    _stop_on_signals()
    try:
        with EmbeddedBroker(port=args.port) as broker:
            print(
                f"Kafka-compatible broker (Tansu, in memory) on {broker.bootstrap_servers}; Ctrl-C to stop", flush=True
            )
            stopped = threading.Event()  # never set: a timed wait between looks at the broker
            while not stopped.wait(1.0):  # until a signal, or the broker process ends
                if not broker.running:
                    raise CommandError(f"the broker exited unexpectedly ({broker!r})")
    except _Stop as stop:
        print(f"sentinel-durable: stopped by {signal.Signals(stop.signum).name}", file=sys.stderr)
        return 128 + stop.signum
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(f"{exc.strerror} (another process has the port; choose another with --port)") from exc
        raise
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(events=args.events)
