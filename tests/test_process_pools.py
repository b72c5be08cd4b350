"""A client used from multiprocessing pool workers, as an application would: exactly once, fork or spawn.

Pool workers started by fork end with ``os._exit()``, so atexit hooks never run in them; the
client closes itself there through multiprocessing's own exit finalizers instead.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import multiprocessing
import os
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import sentinel_durable as sentinel
from sentinel_durable.testing import EmbeddedBroker

#: The application's module-global client: inherited by fork workers, made by the initializer otherwise.
_client: sentinel.Client | None = None

ROUNDS = 3
WORKERS = 4
PARENT_EVENTS = 100
EVENTS_PER_TASK = 475  # 100 + 4 x 475 = 2,000 events per round, as in the issue
#: The tasks take a second or two, and so does ending the workers: far more than they need.
POOL_DEADLINE_S = 60.0


def _make_client(options: dict[str, Any]) -> None:
    """The pool's initializer: each worker makes its own client."""
    global _client
    _client = sentinel.Client(**options)


def _track_events(count: int) -> list[str]:
    """A pool task: track ``count`` events through the worker's (inherited or own) client."""
    assert _client is not None
    return [
        _client.track(service="worker", model="m", prompt=f"p{n}", response="r", latency_ms=1.0) for n in range(count)
    ]


def _run_pool(start_method: str, options: dict[str, Any], with_initializer: bool) -> list[str]:
    """The pool's tasks, then ``close(); join()``, each within POOL_DEADLINE_S: a worker that hangs
    fails the test, with the fork workers' stacks in its captured stderr, instead of hanging the suite."""
    context = multiprocessing.get_context(start_method)
    initializer = (_make_client, (options,)) if with_initializer else (None, ())
    # Fork workers inherit this handler: SIGUSR1 makes one print its threads' stacks and go on. (A worker
    # killed instead, e.g. by SIGABRT, may die holding the pool's task-queue lock: terminate() then hangs.)
    dump_stacks = start_method == "fork"
    if dump_stacks:
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    pool = context.Pool(WORKERS, initializer=initializer[0], initargs=initializer[1])
    try:
        try:
            results = pool.map_async(_track_events, [EVENTS_PER_TASK] * WORKERS).get(timeout=POOL_DEADLINE_S)
        except multiprocessing.TimeoutError:
            _print_worker_stacks(dump_stacks)
            pytest.fail(f"the pool's tasks did not finish within {POOL_DEADLINE_S:g}s: a worker hangs in track()")
        pool.close()
        joiner = threading.Thread(target=pool.join, name="pool-join", daemon=True)
        joiner.start()
        joiner.join(POOL_DEADLINE_S)
        if joiner.is_alive():
            _print_worker_stacks(dump_stacks)
            pytest.fail(
                f"pool.join() did not return within {POOL_DEADLINE_S:g}s: a worker did not end"
                " (its exit hook, which closes the client, hangs)"
            )
    finally:
        pool.terminate()  # only does something if the tasks or the join failed
        if dump_stacks:
            faulthandler.unregister(signal.SIGUSR1)
    return [event_id for ids in results for event_id in ids]


def _print_worker_stacks(enabled: bool) -> None:
    """Have the pool's fork workers still alive print their stacks (see _run_pool). The handler writes
    them as the signal arrives, before the SIGTERM of terminate(), which Linux delivers after it."""
    if not enabled:
        return
    for worker in multiprocessing.active_children():
        if worker.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGUSR1)


@pytest.mark.parametrize(
    ("start_method", "durability", "with_initializer"),
    [
        ("fork", "process", False),  # the workers use the client the parent made and used
        ("fork", "async", False),
        ("fork", "process", True),  # each worker makes its own client
        ("spawn", "process", True),
    ],
)
def test_pool_workers_deliver_every_event_exactly_once(
    tmp_path: Path, topic: str, start_method: str, durability: str, with_initializer: bool
) -> None:
    global _client
    with EmbeddedBroker() as broker:
        for round_number in range(ROUNDS):  # a worker ending mid-batch is a race: give it several chances
            round_topic = f"{topic}-{round_number}"
            options: dict[str, Any] = {
                "brokers": [broker.bootstrap_servers],
                "topic": round_topic,
                "spool_dir": str(tmp_path / f"spool-{round_number}"),
                "durability": durability,
            }
            parent = _client = sentinel.Client(**options)
            try:
                sent = [
                    parent.track(service="parent", model="m", prompt=f"p{n}", response="r", latency_ms=1.0)
                    for n in range(PARENT_EVENTS)
                ]
                sent += _run_pool(start_method, options, with_initializer)
                assert parent.flush(timeout=60)  # adopts what the workers left on disk, if anything
            finally:
                parent.close(timeout=5)
                _client = None
            delivered = Counter(
                json.loads(record.value)["event_id"]
                for record in broker.read_topic(round_topic, timeout=60)  # to the end: all of it was acked
            )
            duplicated = sum(count - 1 for count in delivered.values())
            missing = len(set(sent) - set(delivered))
            assert (round_number, duplicated, missing, len(delivered)) == (round_number, 0, 0, len(sent))
