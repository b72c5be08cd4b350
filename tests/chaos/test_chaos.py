"""Chaos: a sending process SIGKILLed at random moments while the broker comes and goes.

Each round starts ``chaos_sender.py`` (a real ``sentinel_durable.Client``; every round uses the
same spool directory), reads the event ids it prints once ``track`` / ``send_batch`` returned,
and SIGKILLs it after a random number of them. Every other round the broker is taken away
(``proxy.cut()``) at a random point, and brought back at a random point of the next round, so
processes are killed while delivering, while the broker is away, and right after it returned.
Tansu keeps its data in memory, so the broker process itself is never restarted before the
topic is read back: the outage is the network, as clients see it. At the end a client in this
process drains the spool directory, and the topic is read back.

- ``process`` and ``power``: every acknowledged id must be in the topic.
- ``async``: the documented loss window is ``batch_timeout``. An id must be in the topic when
  the test read it more than ``batch_timeout`` + a margin before the kill (the test reads a
  line only after the sender wrote it, which is after ``track`` returned, so the age measured
  here is never more than the real one), or when the sender printed ``flushed`` after it
  (``flush`` writes the buffer to disk first). Younger ids may be lost; they are counted.

Duplicates (a kill between Kafka's ack and the spool's delete) are allowed and counted; each
must be the same record, byte for byte, with the same ``event_id``. Every mode runs with both
transports. Each run adds a ``chaos: mode=... kills=... broker_cuts=... acknowledged=... lost=...
duplicates=...`` line to pytest's closing output; ``SENTINEL_CHAOS_ROUNDS`` (default 6) sets the
kills per run and ``SENTINEL_CHAOS_SEED`` replays one.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import pytest
from conftest import BrokerUnderTest

import sentinel_durable as sentinel

SENDER = Path(__file__).parent / "chaos_sender.py"

Mode = Literal["process", "power", "async"]

#: A round kills the sender after 0..this many acknowledged ids.
MAX_ACKS_PER_ROUND = 2500
#: How long a round may wait for the sender's next line before the test fails.
LINE_TIMEOUT_S = 30.0
#: The sender's batch_timeout in async mode (chaos_sender.py).
ASYNC_BATCH_TIMEOUT_S = 0.05
#: Scheduling slack on top of batch_timeout: the buffer's writer thread runs every batch_timeout,
#: then commits (a few ms for up to 1,000 events), competing for the GIL with the sending thread.
ASYNC_MARGIN_S = 0.25
ASYNC_WINDOW_S = ASYNC_BATCH_TIMEOUT_S + ASYNC_MARGIN_S
#: The async sender pauses this long now and then, so that some events are older than the window.
ASYNC_PAUSE_S = ASYNC_WINDOW_S + 0.05
FLUSH_TIMEOUT_S = 90.0
READ_TIMEOUT_S = 60.0


class SenderProcess:
    """One run of ``chaos_sender.py``; a reader thread moves its stdout lines, with the time read, to a queue."""

    def __init__(self, arguments: list[str], stderr_path: Path) -> None:
        self._stderr_path = stderr_path
        with open(stderr_path, "ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(SENDER), *arguments],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        assert self.process.stdout is not None
        self._lines: queue.Queue[tuple[str, float] | None] = queue.Queue()
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stdout,), name=f"chaos-reader-{self.process.pid}", daemon=True
        )
        self._reader.start()

    def _read(self, stdout: IO[bytes]) -> None:
        with stdout:
            for raw in stdout:
                if not raw.endswith(b"\n"):
                    break  # each line is one atomic write, so this cannot happen; never count half an id
                self._lines.put((raw[:-1].decode(), time.monotonic()))
        self._lines.put(None)

    def next_line(self) -> tuple[str, float]:
        try:
            item = self._lines.get(timeout=LINE_TIMEOUT_S)
        except queue.Empty:
            self.kill()
            raise AssertionError(f"the sender printed nothing for {LINE_TIMEOUT_S:g} s{self._stderr()}") from None
        if item is None:
            raise AssertionError(f"the sender exited (status {self.process.wait()}){self._stderr()}")
        return item

    def kill(self) -> float:
        """SIGKILL the sender; returns the time the signal was sent."""
        killed_at = time.monotonic()
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        return killed_at

    def remaining_lines(self) -> list[tuple[str, float]]:
        """After the kill: the lines still in the pipe (written before the process died)."""
        self._reader.join(timeout=10)
        assert not self._reader.is_alive(), "the sender's stdout stayed open after SIGKILL"
        lines = []
        while (item := self._lines.get_nowait()) is not None:
            lines.append(item)
        return lines

    def _stderr(self) -> str:
        text = self._stderr_path.read_text(errors="replace").strip()
        return f"; its stderr:\n{text}" if text else ""


@dataclass
class ChaosRun:
    """What the rounds did and which ids must be in the topic."""

    mode: Mode
    seed: int
    kills: int = 0
    broker_cuts: int = 0
    acknowledged: dict[str, float] = field(default_factory=dict)
    """Event id -> its age when the sender was killed (a lower bound: measured from when the test read it)."""
    must_arrive: set[str] = field(default_factory=set)


def take_line(run: ChaosRun, seen: list[tuple[str, float]], line: str, read_at: float) -> None:
    """Note one line of the sender's output; ``seen`` holds this round's ids in the order printed."""
    if line == "flushed":  # async: every id printed before this line is on disk
        run.must_arrive.update(event_id for event_id, _ in seen)
    else:
        seen.append((line, read_at))


def run_rounds(
    mode: Mode,
    transport: str,
    broker: BrokerUnderTest,
    spool_dir: Path,
    topic: str,
    rounds: int,
    seed: int,
    stderr_path: Path,
) -> ChaosRun:
    assert broker.proxy is not None
    proxy = broker.proxy
    rng = random.Random(seed)
    run = ChaosRun(mode, seed)
    broker_up = True
    for round_number in range(rounds):
        arguments = [str(spool_dir), broker.bootstrap_servers, topic, mode, transport, f"{seed}-{round_number}"]
        sender = SenderProcess([*arguments, f"{ASYNC_PAUSE_S}"], stderr_path)
        assert sender.next_line()[0] == "ready"
        kill_after = rng.randint(0, MAX_ACKS_PER_ROUND)
        # Cut in even rounds, restore in the next one: kills land while delivering, while the
        # broker is away and right after it is back.
        toggle_at = rng.randint(0, kill_after) if (round_number % 2 == 0) == broker_up else None
        seen: list[tuple[str, float]] = []

        def toggle_broker() -> None:
            nonlocal broker_up
            if broker_up:
                proxy.cut()
                run.broker_cuts += 1
            else:
                proxy.restore()
            broker_up = not broker_up

        if toggle_at == 0:
            toggle_broker()
        while len(seen) < kill_after:
            take_line(run, seen, *sender.next_line())
            if toggle_at is not None and len(seen) == toggle_at:
                toggle_broker()
                toggle_at = None
        killed_at = sender.kill()
        run.kills += 1
        for line, read_at in sender.remaining_lines():
            take_line(run, seen, line, read_at)
        for event_id, read_at in seen:
            age = killed_at - read_at
            run.acknowledged[event_id] = age
            if mode != "async" or age > ASYNC_WINDOW_S:
                run.must_arrive.add(event_id)
    if not broker_up:
        proxy.restore()
    return run


def drain_spool(broker: BrokerUnderTest, spool_dir: Path, topic: str, mode: Mode, transport: str) -> sentinel.Stats:
    """A fresh client drains what the killed senders left on disk; returns its stats."""
    client = sentinel.Client(
        brokers=broker.bootstrap_servers.split(","), topic=topic, spool_dir=spool_dir, durability=mode,
        transport=transport, retry_backoff=0.05, max_retry_backoff=0.5,
    )  # fmt: skip
    try:
        assert client.flush(timeout=FLUSH_TIMEOUT_S), f"the final flush did not finish: {client.stats()}"
        return client.stats()
    finally:
        client.close(timeout=5)


def read_back(broker: BrokerUnderTest, topic: str, expected: int) -> dict[str, list[bytes]]:
    """Every record of the topic, grouped by event id (duplicates included)."""
    try:
        records = broker.read_topic(topic, expected=expected, timeout=READ_TIMEOUT_S)
    except TimeoutError:  # fewer than expected: read what is there and let the caller name the loss
        records = broker.read_topic(topic, timeout=READ_TIMEOUT_S)
    by_id: dict[str, list[bytes]] = defaultdict(list)
    for record in records:
        event_id = json.loads(record.value)["event_id"]
        assert dict(record.headers)["event_id"] == event_id.encode(), "the header and the body name different events"
        by_id[event_id].append(record.value)
    return by_id


def tally(run: ChaosRun, delivered: dict[str, list[bytes]]) -> tuple[set[str], int]:
    """The ids that had to arrive and did not, and how many records were duplicates."""
    return run.must_arrive - delivered.keys(), sum(len(values) - 1 for values in delivered.values())


def assert_outcome(
    run: ChaosRun, delivered: dict[str, list[bytes]], final: sentinel.Stats, lost: set[str], rounds: int, line: str
) -> None:
    """Nothing lost, duplicates identical, the spool empty, every round's kill done."""
    assert not lost, f"{len(lost)} acknowledged events are not in the topic, e.g. {sorted(lost)[:5]}; {line}"
    for event_id, values in delivered.items():
        assert all(value == values[0] for value in values), f"duplicates of {event_id} differ"
    assert (final.spooled, final.in_flight, final.dead_lettered) == (0, 0, 0)
    assert run.kills == rounds


@pytest.mark.broker
@pytest.mark.parametrize("mode", ["process", "power", "async"])
def test_every_acknowledged_event_survives_sigkill_and_broker_outages(
    mode: Mode,
    transport: str,
    chaos_broker: BrokerUnderTest,
    chaos_rounds: int,
    chaos_seed: int,
    chaos_report: Callable[[str], None],
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    topic = f"chaos-{mode}"
    spool_dir = tmp_path / "spool"
    run = run_rounds(
        mode, transport, chaos_broker, spool_dir, topic, chaos_rounds, chaos_seed, tmp_path / "sender.stderr"
    )
    final = drain_spool(chaos_broker, spool_dir, topic, mode, transport)
    delivered = read_back(chaos_broker, topic, expected=len(run.must_arrive))

    lost, duplicates = tally(run, delivered)
    # Age at the kill of every acknowledged event that is not in the topic (async: allowed when young).
    missing_ages = sorted(age for event_id, age in run.acknowledged.items() if event_id not in delivered)
    unacknowledged = len(delivered.keys() - run.acknowledged.keys())  # spooled, then killed before printing
    line = (
        f"chaos: mode={mode} transport={transport} kills={run.kills} broker_cuts={run.broker_cuts}"
        f" acknowledged={len(run.acknowledged)} lost={len(lost)} duplicates={duplicates}"
    )
    if mode == "async":
        line += (
            f" required={len(run.must_arrive)} lost_within_window={len(missing_ages) - len(lost)}"
            f" window_ms={ASYNC_WINDOW_S * 1000:.0f}"
        )
        if missing_ages:
            line += f" oldest_missing_ms={max(0.0, missing_ages[-1]) * 1000:.0f}"
    line += f" unacknowledged_delivered={unacknowledged} seed={chaos_seed} elapsed_s={time.monotonic() - started:.1f}"
    chaos_report(line)

    assert_outcome(run, delivered, final, lost, chaos_rounds, line)
    assert run.broker_cuts == (chaos_rounds + 1) // 2
    if mode != "async":
        assert len(run.must_arrive) == len(run.acknowledged)
