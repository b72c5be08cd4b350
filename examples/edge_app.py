"""An edge app on a flaky network: track every call, keep going through outages, close cleanly.

Run: python examples/edge_app.py --brokers localhost:9092 --iterations 120 --interval 0.5

Stop Kafka (or pull the network cable) while it runs: the status lines show events waiting on
disk and ``broker_connected=False``, then draining once the broker is back. ``track`` never
waits for the network. Ctrl-C closes the client cleanly (exit status 130); whatever is not
delivered by then stays on disk and goes out with the next start.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from typing import Any

import sentinel_durable as sentinel


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--brokers", help="comma-separated host:port list (default: SENTINEL_BROKERS)")
    parser.add_argument("--topic", help="Kafka topic (default: SENTINEL_TOPIC)")
    parser.add_argument("--spool-dir", help="spool directory (default: SENTINEL_SPOOL_DIR or the user state dir)")
    parser.add_argument("--iterations", type=int, default=120, help="events to track (default: %(default)s)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between events (default: %(default)s)")
    parser.add_argument("--status-every", type=int, default=10, help="iterations per status line")
    parser.add_argument("--flush-timeout", type=float, default=10.0, help="seconds to deliver at the end")
    return parser.parse_args(argv)


def status_line(label: str, client: sentinel.Client) -> str:
    stats = client.stats()
    return (
        f"{label}: spooled={stats.spooled} in_flight={stats.in_flight} delivered={stats.delivered}"
        f" broker_connected={stats.broker_connected}"
    )


def answer_locally(question: str) -> str:
    """Stands in for the app's LLM call."""
    return f"echo: {question}"


def run(client: sentinel.Client, iterations: int, interval: float, status_every: int) -> None:
    """Track one call per ``interval`` seconds; ``track`` only writes to disk, so outages never stop it."""
    pacing = threading.Event()  # never set: a timed wait that Ctrl-C interrupts
    for n in range(iterations):
        started = time.perf_counter()
        question = f"reading {n}: is the pump pressure normal?"
        answer = answer_locally(question)
        try:
            client.track(
                service="edge-app", model="local-llm", prompt=question, response=answer,
                latency_ms=(time.perf_counter() - started) * 1000, prompt_tokens=9, completion_tokens=11,
                metadata={"iteration": str(n)},
            )  # fmt: skip
        except sentinel.SpoolFullError as exc:  # the disk bound was reached during a very long outage
            print(f"iteration {n}: not tracked, spool full: {exc}", file=sys.stderr, flush=True)
        if (n + 1) % status_every == 0:
            print(status_line(f"iteration {n + 1}", client), flush=True)
        pacing.wait(interval)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)  # an outage logs one WARNING of sentinel_durable, and nothing else
    overrides: dict[str, Any] = {}
    if args.brokers:
        overrides["brokers"] = args.brokers.split(",")
    if args.topic:
        overrides["topic"] = args.topic
    if args.spool_dir:
        overrides["spool_dir"] = args.spool_dir
    client = sentinel.Client.from_env(**overrides)
    try:
        run(client, args.iterations, args.interval, args.status_every)
        delivered = client.flush(timeout=args.flush_timeout)
        print(status_line("done, " + ("all delivered" if delivered else "the rest stays on disk"), client), flush=True)
    except KeyboardInterrupt:
        print(status_line("interrupted, closing", client), flush=True)
        return 130
    finally:
        client.close(timeout=2.0)  # delivers what it can in 2 s; the rest stays on disk for the next start
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
