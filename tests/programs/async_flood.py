"""Tracks events in ``async`` durability as fast as THREADS threads can, until it is killed.

Usage: python async_flood.py SPOOL_DIR BROKER THREADS BATCH_TIMEOUT_S

Writes ``ready`` once the client is made, then lines ``<event id> <time.time() when track returned>``:
a line is written only after its ``track`` call returned, so every line is an acknowledged event,
and it carries the moment it was acknowledged. Lines go out in chunks shorter than PIPE_BUF, one
``os.write`` each under a lock, so a SIGKILL never leaves half a line in the pipe (the events of
a chunk not yet written are simply not counted as acknowledged).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback

import sentinel_durable as sentinel

_STDOUT = sys.stdout.fileno()
_LINES_PER_WRITE = 20  # about 56 bytes a line: well under PIPE_BUF (4,096)
_write_lock = threading.Lock()


def emit(text: str) -> None:
    with _write_lock:
        os.write(_STDOUT, text.encode())


def flood(client: sentinel.Client, name: str) -> None:
    try:
        lines: list[str] = []
        while True:
            event_id = client.track(service=name, model="m", prompt="p" * 200, response="r" * 50, latency_ms=1.0)
            lines.append(f"{event_id} {time.time():.6f}\n")
            if len(lines) >= _LINES_PER_WRITE:
                emit("".join(lines))
                lines = []
    except BaseException:
        traceback.print_exc()
        os._exit(3)  # a sender that stopped must not look like a slow one


def main() -> None:
    spool_dir, broker, threads, batch_timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    # No broker answers: every event stays in the spool, where the test counts it after the kill.
    client = sentinel.Client(
        brokers=[broker], topic="flood", spool_dir=spool_dir, durability="async", batch_timeout=batch_timeout
    )
    workers = [threading.Thread(target=flood, args=(client, f"s{n}"), daemon=True) for n in range(threads)]
    emit("ready\n")
    for worker in workers:
        worker.start()
    threading.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    main()
