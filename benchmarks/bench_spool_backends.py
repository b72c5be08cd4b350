"""Issue 13 item 8: our spool beside the best spool persist-queue's own classes make, and bare SQLite.

```sh
.venv/bin/python benchmarks/bench_spool_backends.py          # 5 repetitions, full counts (~3 minutes)
.venv/bin/python benchmarks/bench_spool_backends.py --quick  # 3 repetitions, counts / 10
```

The question: could ``sentinel_durable.spool`` be built on ``persistqueue.SQLiteAckQueue``
for no more than 10 % of its throughput? Three spools do the same three operations on the
same 479-byte event JSON (``bench_common.track_fields()``), in one run, interleaved:

(a) **ours**: ``Spool(durability="process")`` (WAL, ``synchronous=NORMAL``):
    ``put_many([record])`` (the per-call ``track`` path), ``put_many`` of 1,000 records, and the
    drain cycle ``claim(500)`` + ``ack(claim)``.
(b) **persist-queue**: ``persistqueue.SQLiteAckQueue`` set up as fast as it goes at our
    durability: ``multithreading=True`` (the spool is written by the callers' threads and
    drained by the flusher thread; ``multithreading=False`` opens the connection with
    ``check_same_thread=True``), a serializer that stores the wire JSON as it is (its default
    pickles), and ``PRAGMA synchronous = NORMAL`` on both of its connections (it sets only
    ``journal_mode=WAL`` in ``SQLiteBase._new_db_connection`` and has no parameter for it, so
    this goes through its private ``_putter``/``_getter``; without it a WAL commit is fsynced).
    ``auto_commit=False`` is refused by ``SQLiteAckQueue.__init__`` (a warning, then True), and
    ``sqlbase.with_conditional_transaction`` commits every statement anyway, so there is no way
    to put many items in one transaction: the batch is 1,000 ``put`` calls. The drain cycle is
    ``get(block=False, raw=True)`` x 500, ``ack(id=...)`` x 500 (by id: ``ack(item)`` searches
    ``_unack_cache`` item by item), then ``clear_acked_data(max_delete=0, keep_latest=0)``
    (acked rows are kept with status 5 until that is called; our spool deletes them). A
    diagnostic row drains without ``clear_acked_data``, persist-queue's default; others use
    ``multithreading=False`` (one connection, which only the thread that made it may use: not
    enough for the spool, but it spares the drain's reads on one connection the changes
    committed on the other).
(c) **bare sqlite3**, the floor: our table (``schema.SQL_CREATE``), WAL, ``synchronous =
    NORMAL``, autocommit connection: one ``INSERT`` per call; ``executemany`` of 1,000 rows in
    ``BEGIN IMMEDIATE`` ... ``COMMIT``; and for the drain a ``SELECT ... LIMIT 500`` from a
    cursor plus one ``executemany`` ``DELETE`` in one transaction.

What ``SQLiteAckQueue`` (persist-queue 1.1.0) cannot do that the spool needs:

* many events in one transaction: ``put`` takes one item and ``with_conditional_transaction``
  commits each ``_insert_into``/``_mark_ack_status``/``_delete``; there is no put, get or ack
  of many;
* a claim without a write per row: ``_pop`` selects one row (``_SQL_SELECT``, ``LIMIT 1``) and
  commits an ``UPDATE`` to status 2 for it; ours reads 500 rows from a cursor and writes nothing;
* a cursor: ``_select`` starts every ``get`` at ``_id > 0`` (``_start_key``), so the rows not
  ready in front of the queue (in flight, acked, dead letters) are stepped over on every get;
* deleting delivered rows: ``ack`` sets status 5 and keeps the row; ``clear_acked_data``
  deletes them (by default at most 1,000, keeping the latest 1,000), ``shrink_disk_usage`` is
  a full ``VACUUM`` (we delete in the ack's transaction and vacuum incrementally);
* our columns: ``_SQL_CREATE``/``_SQL_INSERT`` know ``_id``, ``data``, ``timestamp``, ``status``
  only — attempts, last error, event id, service, model and event time would have to ride in
  ``data`` (parsed at every claim) or be written by a second statement; ``nack``/``ack_failed``
  record no error and no attempt count;
* ``synchronous``: no setting (``_new_db_connection`` sets only WAL), and no fsync-on-insert
  mode with group commit (each ``put`` is its own commit under ``tran_lock``).

(b) is therefore an upper bound of a spool on persist-queue: it puts bare values, and the
spool's own work (overflow, group commit, counts) would come on top of its calls.

Every figure is the median of the repetitions, and every ratio the median of the ratios
within one repetition: figures of this machine drift by up to 30 % from one repetition to the
next, the spools of one repetition together. Each repetition uses fresh temporary directories
(in ``tempfile``'s directory, like the other benchmarks) and times the spools one after the
other, in an order that rotates from one repetition to the next. Records and values are built
before the clock starts. Nothing here asserts on a timing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import persistqueue
from bench_common import EVENT_BYTES, make_events, median, progress, spool_dir, track_fields

import sentinel_durable as sentinel
from sentinel_durable.spool import Spool, SpoolRecord, schema

CLAIM = 500  # events per drain cycle (the flusher's claim)
BATCH = 1_000  # events per put_many
DISTINCT_RECORDS = 1_000  # records built once and reused in turn (each its own event id)


@dataclass(frozen=True)
class Counts:
    single_puts: int  # put of 1, calls per measurement
    batches: int  # put of BATCH, calls per measurement
    cycles: int  # drain cycles per measurement (CLAIM events each)
    repeats: int


FULL = Counts(single_puts=5_000, batches=20, cycles=20, repeats=5)
QUICK = Counts(single_puts=500, batches=4, cycles=4, repeats=3)


# -- (a) ours ---------------------------------------------------------------------------------------


def _our_spool(directory: Path) -> Spool:
    return Spool(directory, durability="process", max_spool_bytes=1 << 40)


def ours_put_one(records: Sequence[SpoolRecord], calls: int) -> float:
    with spool_dir("ours-put1") as directory, _our_spool(directory) as spool:
        for record in records[:50]:  # untimed: the file's first pages
            spool.put_many([record])
        started = time.perf_counter()
        for n in range(calls):
            spool.put_many([records[n % len(records)]])
        return time.perf_counter() - started


def ours_put_batch(records: Sequence[SpoolRecord], batches: int) -> float:
    batch = list(records[:BATCH])
    with spool_dir("ours-batch") as directory, _our_spool(directory) as spool:
        spool.put_many(batch[:50])
        started = time.perf_counter()
        for _ in range(batches):
            spool.put_many(batch)
        return time.perf_counter() - started


def ours_drain(records: Sequence[SpoolRecord], cycles: int) -> float:
    batch = list(records[:BATCH])
    with spool_dir("ours-drain") as directory, _our_spool(directory) as spool:
        backlog = cycles * CLAIM
        for start in range(0, backlog, BATCH):
            spool.put_many(batch[: min(BATCH, backlog - start)])
        drained = 0
        started = time.perf_counter()
        for _ in range(cycles):
            claim = spool.claim(CLAIM)
            assert claim is not None
            spool.ack(claim)
            drained += len(claim)
        seconds = time.perf_counter() - started
        if drained != backlog or spool.claim(1) is not None:
            raise RuntimeError(f"ours drained {drained} of {backlog}")
        return seconds


# -- (b) persist-queue --------------------------------------------------------------------------


class RawBytes:
    """A persist-queue serializer that stores the event's wire JSON as it is (what our ``data`` holds)."""

    @staticmethod
    def dumps(value: bytes) -> bytes:
        return value

    @staticmethod
    def loads(value: bytes) -> bytes:
        return value


def persist_queue(directory: Path, multithreading: bool = True) -> persistqueue.SQLiteAckQueue:
    """The fastest ``SQLiteAckQueue`` at our durability (see the module docstring)."""
    queue = persistqueue.SQLiteAckQueue(str(directory), multithreading=multithreading, serializer=RawBytes)
    for connection in {id(c): c for c in (queue._putter, queue._getter)}.values():
        connection.execute("PRAGMA synchronous = NORMAL")
        if connection.execute("PRAGMA synchronous").fetchone()[0] != 1:
            raise RuntimeError("persist-queue's connection did not take synchronous = NORMAL")
    return queue


def pq_put_one(values: Sequence[bytes], calls: int, multithreading: bool = True) -> float:
    with spool_dir("pq-put1") as directory:
        queue = persist_queue(directory, multithreading)
        try:
            for value in values[:50]:
                queue.put(value)
            started = time.perf_counter()
            for n in range(calls):
                queue.put(values[n % len(values)])
            return time.perf_counter() - started
        finally:
            queue.close()


def pq_put_batch(values: Sequence[bytes], batches: int, multithreading: bool = True) -> float:
    batch = list(values[:BATCH])
    with spool_dir("pq-batch") as directory:
        queue = persist_queue(directory, multithreading)
        try:
            for value in batch[:50]:
                queue.put(value)
            started = time.perf_counter()
            for _ in range(batches):
                for value in batch:  # no put_many: one transaction each (with_conditional_transaction)
                    queue.put(value)
            return time.perf_counter() - started
        finally:
            queue.close()


def pq_drain(values: Sequence[bytes], cycles: int, multithreading: bool = True, clear_acked: bool = True) -> float:
    batch = list(values[:BATCH])
    with spool_dir("pq-drain") as directory:
        queue = persist_queue(directory, multithreading)
        try:
            backlog = cycles * CLAIM
            for n in range(backlog):
                queue.put(batch[n % len(batch)])
            drained = 0
            started = time.perf_counter()
            for _ in range(cycles):
                items = [queue.get(block=False, raw=True) for _ in range(CLAIM)]  # one row, one commit each
                for item in items:
                    queue.ack(id=item["pqid"])  # one commit each
                if clear_acked:
                    queue.clear_acked_data(max_delete=0, keep_latest=0)  # 0: no LIMIT, no OFFSET
                drained += len(items)
            seconds = time.perf_counter() - started
            if drained != backlog or queue.qsize() != 0:
                raise RuntimeError(f"persist-queue drained {drained} of {backlog}")
            return seconds
        finally:
            queue.close()


# -- (c) bare sqlite3 ---------------------------------------------------------------------------

SQL_CLAIM = (
    f"SELECT _id, data, event_id, service_name, model, event_time_ms, attempts, timestamp FROM {schema.TABLE} "
    "WHERE _id >= ? AND status = 1 ORDER BY _id LIMIT ?"
)
SQL_DELETE = f"DELETE FROM {schema.TABLE} WHERE _id = ?"


def _sqlite(directory: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(directory / "floor.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute(schema.SQL_CREATE)
    return connection


def _rows(records: Sequence[SpoolRecord]) -> list[tuple[object, ...]]:
    now = time.time()
    return [(r.data, now, r.event_id, r.service_name, r.model, r.event_time_ms) for r in records]


def sqlite_put_one(records: Sequence[SpoolRecord], calls: int) -> float:
    rows = _rows(records)
    with spool_dir("sqlite-put1") as directory:
        connection = _sqlite(directory)
        try:
            for row in rows[:50]:
                connection.execute(schema.SQL_INSERT, row)
            started = time.perf_counter()
            for n in range(calls):
                connection.execute(schema.SQL_INSERT, rows[n % len(rows)])  # autocommit: one transaction
            return time.perf_counter() - started
        finally:
            connection.close()


def sqlite_put_batch(records: Sequence[SpoolRecord], batches: int) -> float:
    rows = _rows(records[:BATCH])
    with spool_dir("sqlite-batch") as directory:
        connection = _sqlite(directory)
        try:
            connection.executemany(schema.SQL_INSERT, rows[:50])
            started = time.perf_counter()
            for _ in range(batches):
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(schema.SQL_INSERT, rows)
                connection.execute("COMMIT")
            return time.perf_counter() - started
        finally:
            connection.close()


def sqlite_drain(records: Sequence[SpoolRecord], cycles: int) -> float:
    rows = _rows(records[:BATCH])
    with spool_dir("sqlite-drain") as directory:
        connection = _sqlite(directory)
        try:
            backlog = cycles * CLAIM
            connection.execute("BEGIN IMMEDIATE")
            for start in range(0, backlog, BATCH):
                connection.executemany(schema.SQL_INSERT, rows[: min(BATCH, backlog - start)])
            connection.execute("COMMIT")
            cursor, drained = 0, 0
            started = time.perf_counter()
            for _ in range(cycles):
                claimed = connection.execute(SQL_CLAIM, (cursor, CLAIM)).fetchall()
                cursor = claimed[-1][0] + 1
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(SQL_DELETE, [(row[0],) for row in claimed])
                connection.execute("COMMIT")
                drained += len(claimed)
            seconds = time.perf_counter() - started
            if drained != backlog:
                raise RuntimeError(f"sqlite drained {drained} of {backlog}")
            return seconds
        finally:
            connection.close()


# -- the run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    name: str
    op_word: str  # what one operation is called in the table
    events_per_op: int
    ops: Callable[[Counts], int]  # operations per measurement
    spools: dict[str, Callable[[Sequence[SpoolRecord], Sequence[bytes], int], float]]


OURS, PQ, FLOOR = "ours", "persist-queue", "sqlite3"
#: Diagnostic variants of (b), printed under their operation with their ratio to ours.
PQ_ONE_CONNECTION = "persist-queue, multithreading=False (one connection, one thread only)"
PQ_KEEP = "persist-queue, acked rows kept (without clear_acked_data, its default)"

OPERATIONS = [
    Operation(
        "put of 1 event",
        "calls",
        1,
        lambda c: c.single_puts,
        {
            OURS: lambda r, v, n: ours_put_one(r, n),
            PQ: lambda r, v, n: pq_put_one(v, n),
            PQ_ONE_CONNECTION: lambda r, v, n: pq_put_one(v, n, multithreading=False),
            FLOOR: lambda r, v, n: sqlite_put_one(r, n),
        },
    ),
    Operation(
        f"put of {BATCH:,} events",
        "batches",
        BATCH,
        lambda c: c.batches,
        {
            OURS: lambda r, v, n: ours_put_batch(r, n),
            PQ: lambda r, v, n: pq_put_batch(v, n),
            PQ_ONE_CONNECTION: lambda r, v, n: pq_put_batch(v, n, multithreading=False),
            FLOOR: lambda r, v, n: sqlite_put_batch(r, n),
        },
    ),
    Operation(
        f"drain cycle: claim {CLAIM} + ack",
        "cycles",
        CLAIM,
        lambda c: c.cycles,
        {
            OURS: lambda r, v, n: ours_drain(r, n),
            PQ: lambda r, v, n: pq_drain(v, n),
            PQ_ONE_CONNECTION: lambda r, v, n: pq_drain(v, n, multithreading=False),
            PQ_KEEP: lambda r, v, n: pq_drain(v, n, clear_acked=False),
            FLOOR: lambda r, v, n: sqlite_drain(r, n),
        },
    ),
]


Results = dict[tuple[str, str], list[float]]


def measure(counts: Counts, records: Sequence[SpoolRecord], values: Sequence[bytes]) -> Results:
    """ops/s of every (operation, spool), one list entry per repetition."""
    results: Results = {}
    for repeat in range(counts.repeats):
        for operation in OPERATIONS:
            names = list(operation.spools)
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:  # rotate who goes first
                ops = operation.ops(counts)
                seconds = operation.spools[name](records, values, ops)
                results.setdefault((operation.name, name), []).append(ops / seconds)
                progress(f"repeat {repeat + 1}/{counts.repeats}: {operation.name}, {name}: {ops / seconds:,.1f} ops/s")
    return results


def results_median(results: Results, operation: Operation, name: str) -> float:
    return median(results[(operation.name, name)])


def _cell(ops_per_s: float, operation: Operation) -> str:
    events = ops_per_s * operation.events_per_op
    if operation.events_per_op == 1:
        return f"{events:,.0f} events/s"
    return f"{events:,.0f} events/s ({ops_per_s:,.1f} {operation.op_word}/s)"


def paired_ratios(results: Results, operation: Operation, name: str, base: str) -> list[float]:
    """``name`` ÷ ``base`` within each repetition."""
    return [a / b for a, b in zip(results[(operation.name, name)], results[(operation.name, base)], strict=True)]


def paired_ratio(results: Results, operation: Operation, name: str, base: str) -> float:
    return median(paired_ratios(results, operation, name, base))


def table(results: Results) -> str:
    lines = [
        "| operation | (a) ours: `Spool` | (b) on `SQLiteAckQueue` | (c) bare sqlite3 | (b) ÷ (a) | (a) ÷ (c) |",
        "|---|---|---|---|---|---|",
    ]
    for operation in OPERATIONS:
        ours, pq, floor = (results_median(results, operation, name) for name in (OURS, PQ, FLOOR))
        lines.append(
            f"| {operation.name} | {_cell(ours, operation)} | {_cell(pq, operation)} | {_cell(floor, operation)} "
            f"| **{paired_ratio(results, operation, PQ, OURS):.3f}** "
            f"| {paired_ratio(results, operation, OURS, FLOOR):.2f} |"
        )
        for name in operation.spools:
            if name not in (OURS, PQ, FLOOR):
                variant = results_median(results, operation, name)
                ratio = paired_ratio(results, operation, name, OURS)
                lines.append(f"| ↳ diagnostic: {name} | | {_cell(variant, operation)} | | {ratio:.3f} | |")
    lines += [
        "",
        "Figures: medians of the repetitions; ratios: medians of the ratios within one repetition.",
        "Every repetition, ops/s:",
        "",
        "| operation | spool | repetitions |",
        "|---|---|---|",
    ]
    for operation in OPERATIONS:
        for name in operation.spools:
            values = results[(operation.name, name)]
            lines.append(f"| {operation.name} | {name} | {', '.join(f'{v:,.1f}' for v in values)} |")
        ratios = paired_ratios(results, operation, PQ, OURS)
        lines.append(f"| {operation.name} | (b) ÷ (a) | {', '.join(f'{r:.3f}' for r in ratios)} |")
    return "\n".join(lines)


def load_average() -> str:
    """The 1-minute load average: a run on a busy machine is noisier (the machine has few CPUs)."""
    return f"{os.getloadavg()[0]:.2f}"


def header(counts: Counts, quick: bool, load_before: str) -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    except OSError:
        pass
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "not a git checkout"
    return "\n".join(
        [
            "## Spool backends: ours, on persist-queue, bare SQLite" + (" (--quick)" if quick else ""),
            "",
            "```",
            f"machine: {os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}",
            f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
            f"persist-queue {persistqueue.__version__}, sentinel-durable {sentinel.__version__}, code {commit}",
            f"files in {tempfile.gettempdir()}; event: {EVENT_BYTES}-byte JSON; all: WAL, synchronous=NORMAL",
            f"counts: {counts.single_puts:,} puts of 1, {counts.batches} puts of {BATCH:,}, "
            f"{counts.cycles} drain cycles of {CLAIM} ({counts.cycles * CLAIM:,}-event backlog); "
            f"median of {counts.repeats}; load average (1 min) {load_before} before, {load_average()} after",
            "```",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions, counts / 10 (a smoke run)")
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    warnings.simplefilter("error")  # a persist-queue setting it refuses would only warn
    fields = track_fields()
    records = [SpoolRecord.from_event(event) for event in make_events(fields, DISTINCT_RECORDS)]
    if any(len(record.data) != EVENT_BYTES for record in records):
        raise RuntimeError(f"the benchmark event is not {EVENT_BYTES} bytes")
    values = [record.data for record in records]
    load_before = load_average()
    results = measure(counts, records, values)
    print(header(counts, args.quick, load_before))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
