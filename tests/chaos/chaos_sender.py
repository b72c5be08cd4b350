"""Sends events through a real ``sentinel_durable.Client`` until it is killed.

Usage: python chaos_sender.py SPOOL_DIR BROKER TOPIC DURABILITY TRANSPORT SEED PAUSE_S

Writes to stdout with one ``os.write`` per call's lines (a batch's ids together), always shorter
than PIPE_BUF, so a SIGKILL never leaves half a line in the pipe:

- ``ready``: the client is constructed.
- ``<event id>``: the ``track`` / ``send_batch`` call that spooled this event has returned.
  It is printed after the call returns, never before, so a printed id is an acknowledged one.
- ``flushed`` (async only): ``client.flush(0)`` returned; it writes the async buffer to disk
  before it looks at the broker, so every id printed before this line is on disk.

``process`` and ``power`` use four sending threads (concurrent senders share SQLite commits,
as in a real server). ``async`` uses one, so that a ``flushed`` line covers exactly the ids
printed before it; it also pauses for ``PAUSE_S`` now and then, so that some events are older
than the documented loss window when the kill comes (the test's check is about exactly that age).
"""

from __future__ import annotations

import os
import random
import sys
import threading
import traceback

import sentinel_durable as sentinel

_STDOUT = sys.stdout.fileno()
_SENDER_THREADS = {"process": 4, "power": 4, "async": 1}


def emit(line: str) -> None:
    os.write(_STDOUT, f"{line}\n".encode())


def build_event(rng: random.Random, sequence: str) -> sentinel.TelemetryEvent:
    return (
        sentinel.EventBuilder().service(f"chaos-{rng.randint(0, 3)}").model("m")
        .prompt("p" * rng.randint(1, 400), 1).response("r", 1, "stop").latency(1.0).cost(0.0)
        .add_metadata("sequence", sequence).build()
    )  # fmt: skip


def send_forever(client: sentinel.Client, rng: random.Random, name: str, pause_s: float) -> None:
    asynchronous = client.config.durability == "async"
    pause = threading.Event()  # never set: the pause is the age we want, not a wait for anything
    calls = 0
    next_pause = rng.randint(200, 1500)
    while True:
        calls += 1
        if rng.random() < 0.1:  # a batch: all of it is spooled (and printed) or none
            events = [build_event(rng, f"{name}-{calls}-{n}") for n in range(rng.randint(2, 20))]
            ids = client.send_batch(events)
        else:
            ids = [
                client.track(
                    service=f"chaos-{rng.randint(0, 3)}", model="m", prompt="p" * rng.randint(1, 400),
                    response="r", latency_ms=1.0, metadata={"sequence": f"{name}-{calls}"},
                )
            ]  # fmt: skip
        emit("\n".join(ids))
        if asynchronous and rng.random() < 0.01:
            client.flush(0)
            emit("flushed")
        if asynchronous and calls == next_pause:
            pause.wait(pause_s)
            next_pause = calls + rng.randint(200, 1500)


def send_or_exit(client: sentinel.Client, rng: random.Random, name: str, pause_s: float) -> None:
    try:
        send_forever(client, rng, name, pause_s)
    except BaseException:
        traceback.print_exc()
        os._exit(3)  # a sender that stops sending must not look like one that is merely slow


def main() -> None:
    spool_dir, broker, topic, durability, transport, seed, pause_s = sys.argv[1:8]
    client = sentinel.Client(
        brokers=broker.split(","), topic=topic, spool_dir=spool_dir, durability=durability, transport=transport,
        batch_timeout=0.05 if durability == "async" else 0.0,
        retry_backoff=0.05, max_retry_backoff=0.5, write_timeout=5.0,
    )  # fmt: skip
    emit("ready")
    threads = [
        threading.Thread(
            target=send_or_exit,
            args=(client, random.Random(f"{seed}-{n}"), f"t{n}", float(pause_s)),
            name=f"chaos-sender-{n}",
            daemon=True,
        )
        for n in range(_SENDER_THREADS[durability])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()  # forever: the test kills us


if __name__ == "__main__":
    main()
