"""The durable spool: persist-queue's SQLite ack-queue on disk, batched, bounded and crash-safe.

A spool *directory* holds one or more spool *files*. Each file is a SQLite database in
persist-queue's ``SQLiteAckQueue`` layout, so that
``persistqueue.SQLiteAckQueue(path=directory, db_file_name=name, serializer=persistqueue.serializers.json)``
reads its pending events. What we add to persist-queue, and why:

* many events per transaction (``put_many``, ``claim``, ``ack``, ``release``, ``dead_letter``)
  instead of one transaction per event;
* an index on ``(status, _id)`` so a claim does not scan the table;
* acked rows are deleted (not marked 5) and the file is vacuumed incrementally, so a drained
  spool does not keep its peak size;
* columns beside persist-queue's (attempts, last error, and the event id, service and model that
  the transport puts in record headers);
* the SQLite ``synchronous`` level each durability mode needs, and group commit;
* one owning process per file, held by an OS lock on a sibling ``.lock`` file;
* the file's destination: a ``sentinel_meta`` table records the topic its events are for,
  written in the transaction that creates the schema, so a file is only ever adopted by a
  client of that topic (or delivered there by the command line).

Statuses are persist-queue's ``AckStatus`` values. ``data`` holds the event's wire JSON, exactly
the Kafka record value; ``timestamp`` is when the event was spooled (epoch seconds).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from .crypto import CannotDecrypt, SpoolCipher, is_sealed
from .errors import ConfigError, SpoolFullError
from .event import TelemetryEvent, check_record_size

__all__ = ["Claim", "ClaimedRecord", "Spool", "SpoolCounts", "SpoolRecord"]

logger = logging.getLogger(__name__)

Durability = Literal["process", "power", "async"]
Overflow = Literal["block", "drop_oldest", "drop_newest", "error"]


class AckStatus:
    """persist-queue's status codes (``persistqueue.sqlackqueue.AckStatus``)."""

    INITED = 0  # persist-queue's put(); treated as ready when a file is adopted
    READY = 1  # pending: waiting for the flusher
    UNACK = 2  # claimed by the flusher, in flight to Kafka
    ACKED = 5  # persist-queue keeps acked rows; we delete them instead
    ACK_FAILED = 9  # dead letter: failed for good, kept with its last error


#: 1: persist-queue's table and our columns; 2: the ``sentinel_meta`` table records the topic.
SCHEMA_VERSION = 2
FILE_PREFIX = "spool-"
FILE_SUFFIX = ".db"
LOCK_SUFFIX = ".lock"
QUARANTINE_MARK = ".corrupt-"
#: Rough bytes one row costs beyond its JSON, used to size drops and checks before commit.
ROW_OVERHEAD = 120
#: Free pages are given back to the filesystem once the spool is drained (and they add up to
#: SHRINK_DRAINED_AT), or while it drains once they are most of a large file: vacuuming during
#: a drain moves live pages and costs more than it saves (free pages are reused by new events).
SHRINK_AT = 64 << 20
SHRINK_DRAINED_AT = 1 << 20
#: Bytes kept free below max_spool_bytes for the pages a commit may add beyond its rows' size.
GROWTH_SLACK = 4 * 4096


def _repr_sized(record: object, data: bytes, names: Sequence[str]) -> str:
    """A record's repr with ``data`` (the event's wire JSON: its prompt, response and metadata) as its size."""
    shown = "".join(f"{name}={getattr(record, name)!r}, " for name in names)
    return f"{type(record).__name__}({shown}data=<{len(data)} bytes>)"


class SpoolRecord(NamedTuple):
    """An event ready to be spooled: its wire JSON and the fields the transport needs."""

    data: bytes
    event_id: str
    service_name: str
    model: str
    event_time_ms: int

    def __repr__(self) -> str:
        return _repr_sized(self, self.data, self._fields[1:])

    @classmethod
    def from_event(cls, event: TelemetryEvent, max_message_bytes: int | None = None) -> SpoolRecord:
        """The record of ``event``; ``ValidationError`` when it would be larger than
        ``max_message_bytes`` (Kafka would refuse it: it is never spooled)."""
        data = event.to_json()
        if max_message_bytes is not None:
            check_record_size(data, event, max_message_bytes)
        return cls(
            data=data,
            event_id=event.event_id,
            service_name=event.service_name,
            model=event.model,
            event_time_ms=int(event.timestamp.timestamp() * 1000),
        )


class ClaimedRecord(NamedTuple):
    """A spooled event handed to the flusher."""

    row_id: int
    data: bytes
    event_id: str
    service_name: str
    model: str
    event_time_ms: int
    attempts: int
    spooled_at: float

    def __repr__(self) -> str:
        return _repr_sized(self, self.data, [name for name in self._fields if name != "data"])


@dataclass(frozen=True)
class Claim:
    """A batch claimed from one spool file; settle it with ``Spool.ack``/``release``/``dead_letter``."""

    file: _SpoolFile
    records: list[ClaimedRecord]

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class SpoolCounts:
    """What the spool holds now, summed over the files this process owns (and the orphans it will
    adopt, with ``Spool.counts(orphans=True)``)."""

    pending: int = 0
    in_flight: int = 0
    dead_letters: int = 0
    disk_bytes: int = 0
    used_bytes: int = 0
    oldest_pending_age_s: float | None = None
    files: int = 0
    commits: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    quarantined: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FlushMark:
    last_ids: dict[Path, tuple[int, int]]  # file -> (highest row id, how many it had dead-lettered)
    dropped: int


class SpoolFileCorrupt(Exception):
    """A spool file failed to open or its integrity check."""


class SpoolFileTooNew(Exception):
    """A spool file written by a newer version: left alone for that version to drain."""


class SpoolFileUnavailable(Exception):
    """A spool file could not be opened for a reason that may pass (locked, I/O error, disk full)."""


class SpoolClosed(Exception):
    """A spool (file) was used after it was closed."""


class SpoolFileBusy(Exception):
    """A spool file is owned by a live process."""


# --- fork safety -----------------------------------------------------------------------------------


class _ForkGate:
    """Keeps ``os.fork()`` out of SQLite calls.

    SQLite guards process-wide state (its allocator's statistics, its table of open files) with
    pthread mutexes. A child forked while another thread of the parent is inside a SQLite call
    inherits such a mutex locked by a thread that does not exist in the child, and the child's
    first SQLite call (opening its own spool file) then waits forever. Every SQLite call of this
    module runs inside ``section()``; a fork (hooks registered below) waits until no thread is in
    one, lets none in until it is done, and the child starts with a fresh gate.

    A section nests (per thread), and is short: one statement or transaction, at most SQLite's
    busy timeout when another process holds the file's write lock. Never yield from inside one.
    """

    #: How long a fork waits for sections to end beyond the longest busy timeout in use.
    FORK_WAIT_MARGIN = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a section ended, or a fork did
        self._inside = 0  # threads inside a section
        self._forks = 0  # forks waiting or in progress
        self._depth = threading.local()

    def enter(self) -> None:
        """Start a section (wait while a fork is in progress); ``leave()`` ends it."""
        local = self._depth
        depth = getattr(local, "value", 0)
        if depth == 0:
            with self._lock:
                while self._forks:
                    self._changed.wait()
                self._inside += 1
        local.value = depth + 1

    def leave(self) -> None:
        local = self._depth
        local.value -= 1
        if local.value == 0:
            with self._lock:
                self._inside -= 1
                if self._forks and not self._inside:
                    self._changed.notify_all()

    @contextlib.contextmanager
    def section(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def before_fork(self) -> None:
        own = 1 if getattr(self._depth, "value", 0) else 0  # a fork from inside a section cannot wait for itself
        wait = max((spool.write_timeout for spool in list(_LIVE_SPOOLS)), default=10.0) + self.FORK_WAIT_MARGIN
        with self._lock:
            self._forks += 1
            if not self._changed.wait_for(lambda: self._inside <= own, timeout=wait):
                logger.warning(
                    "fork() while another thread is still inside a spool SQLite call after %gs: the child's"
                    " SQLite calls may hang", wait,
                )  # fmt: skip

    def after_fork_in_parent(self) -> None:
        with self._lock:
            self._forks -= 1
            if not self._forks:
                self._changed.notify_all()


_FORK_GATE = _ForkGate()


def _gate_before_fork() -> None:
    _FORK_GATE.before_fork()


def _gate_after_fork_in_parent() -> None:
    _FORK_GATE.after_fork_in_parent()


def _gate_after_fork_in_child() -> None:
    # The inherited gate counts the parent's threads (and may be locked by one of them).
    global _FORK_GATE
    _FORK_GATE = _ForkGate()


# Registered first of this module's fork hooks: its after_in_child runs before the spools'.
os.register_at_fork(
    before=_gate_before_fork, after_in_parent=_gate_after_fork_in_parent, after_in_child=_gate_after_fork_in_child
)


class _GatedLock:
    """A file's lock whose holder is inside a fork section: what it does under the lock is SQLite."""

    __slots__ = ("_gate", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gate: _ForkGate | None = None  # the gate entered (a fork in a child replaces the module's)

    def __enter__(self) -> None:
        self._lock.acquire()
        gate = _FORK_GATE
        try:
            gate.enter()
        except BaseException:
            self._lock.release()
            raise
        self._gate = gate  # only the lock's holder reads or writes it

    def __exit__(self, *exc_info: object) -> None:
        gate, self._gate = self._gate, None
        try:
            if gate is not None:
                gate.leave()
        finally:
            self._lock.release()


class _SpoolFile:
    """One SQLite spool file, owned by this process. All SQL lives here.

    Thread-safe: every method takes ``self.lock`` around its transaction.
    """

    TABLE = "ack_queue_default"  # persist-queue's table for name="default"
    META_TABLE = "sentinel_meta"  # what decides where the file's events go (key "topic")
    SQL_CREATE = (
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        "_id INTEGER PRIMARY KEY, data BLOB, timestamp FLOAT, status INTEGER, "
        "attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, "
        "event_id TEXT, service_name TEXT, model TEXT, event_time_ms INTEGER)"
    )
    SQL_INSERT = (
        f"INSERT INTO {TABLE} (data, timestamp, status, event_id, service_name, model, event_time_ms) "
        f"VALUES (?, ?, {AckStatus.READY}, ?, ?, ?, ?)"
    )
    # A claim only reads: the owner keeps its in-flight rows in memory (above them, the cursor),
    # so a claim costs no write, and a crash leaves them simply pending for the next owner.
    SQL_CLAIM = (
        "SELECT _id, data, event_id, service_name, model, event_time_ms, attempts, timestamp "
        f"FROM {TABLE} WHERE _id >= ? AND status = {AckStatus.READY} ORDER BY _id LIMIT ?"
    )
    SQL_DELETE = f"DELETE FROM {TABLE} WHERE _id = ? AND status = {AckStatus.READY}"
    SQL_RELEASE = (
        f"UPDATE {TABLE} SET status = {AckStatus.READY}, attempts = attempts + ?, last_error = ? WHERE _id = ?"
    )
    SQL_DEAD_LETTER = (
        f"UPDATE {TABLE} SET status = {AckStatus.ACK_FAILED}, attempts = attempts + 1, last_error = ? WHERE _id = ?"
    )
    SQL_RESET_CLAIMED = (
        f"UPDATE {TABLE} SET status = {AckStatus.READY} WHERE status IN ({AckStatus.INITED}, {AckStatus.UNACK})"
    )
    SQL_COUNT_BY_STATUS = f"SELECT status, COUNT(*) FROM {TABLE} GROUP BY status"
    # Rows are spooled in _id order, so the first unsettled row is the oldest.
    SQL_FIRST_UNSETTLED = (
        f"SELECT _id, timestamp FROM {TABLE} WHERE status IN ({AckStatus.READY}, {AckStatus.UNACK}) "
        "ORDER BY _id LIMIT 1"
    )
    SQL_OLDEST_PENDING_PAGE = (
        f"SELECT _id, timestamp, length(data), event_id FROM {TABLE} WHERE _id >= ? AND status = {AckStatus.READY} "
        "ORDER BY _id LIMIT ?"
    )
    SQL_DEAD_LETTERS = (
        f"SELECT _id, data, event_id, attempts, last_error, timestamp FROM {TABLE} "
        f"WHERE status = {AckStatus.ACK_FAILED} ORDER BY _id"
    )
    SQL_DEAD_LETTER_RECORDS = (
        f"SELECT _id, data, event_id, service_name, model, event_time_ms FROM {TABLE} "
        f"WHERE status = {AckStatus.ACK_FAILED} ORDER BY _id"
    )
    SQL_DELETE_DEAD = f"DELETE FROM {TABLE} WHERE _id = ? AND status = {AckStatus.ACK_FAILED}"
    SQL_REQUEUE_DEAD = (
        f"UPDATE {TABLE} SET status = {AckStatus.READY}, attempts = 0 WHERE status = {AckStatus.ACK_FAILED}"
    )
    SQL_PURGE_DEAD = f"DELETE FROM {TABLE} WHERE status = {AckStatus.ACK_FAILED}"
    SQL_MAX_ID = f"SELECT MAX(_id) FROM {TABLE}"
    SQL_EVENTS_IN_ORDER = f"SELECT data, event_id FROM {TABLE} WHERE status IN"
    SQL_UNSETTLED_THROUGH = (
        f"SELECT COUNT(*) FROM {TABLE} WHERE status IN ({AckStatus.READY}, {AckStatus.UNACK}) AND _id <= ?"
    )

    SQL_CREATE_META = f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    SQL_SET_TOPIC = f"INSERT OR REPLACE INTO {META_TABLE} (key, value) VALUES ('topic', ?)"
    SQL_GET_TOPIC = f"SELECT value FROM {META_TABLE} WHERE key = 'topic'"
    SQL_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"

    SQL_ANY_ROW = f"SELECT EXISTS (SELECT 1 FROM {TABLE})"
    SQL_DELETE_PENDING = f"DELETE FROM {TABLE} WHERE _id = ? AND status = {AckStatus.READY}"

    def __init__(
        self,
        path: Path,
        lock_fd: int,
        *,
        durability: Durability,
        busy_timeout: float,
        cipher: SpoolCipher | None = None,
        topic: str | None = None,
    ) -> None:
        """``topic`` is recorded in a file this creates (or finds without a schema); an existing
        file keeps the topic it records, read into ``self.topic`` (None: written before topics
        were recorded)."""
        self.path = path
        self._cipher = cipher
        self.topic: str | None = topic
        self.lock_fd = lock_fd
        self.lock = _GatedLock()  # its holder runs SQLite: a fork waits for it (see _ForkGate)
        self.closed = False  # set under the lock; every method checks it there
        self.pending = 0
        self.in_flight = 0
        self.dead_letters = 0
        # Every pending row has _id >= cursor: claims scan the table from here, in rowid order,
        # instead of keeping an index on status (which costs a quarter of each insert).
        self.cursor = 0
        self.dead_lettered: list[int] = []  # row ids dead-lettered while we own the file
        self._fsync_inserts = durability == "power"
        with _FORK_GATE.section():
            self._connection = self._connect(durability, busy_timeout)

    # -- opening ------------------------------------------------------------------------

    def _connect(self, durability: Durability, busy_timeout: float) -> sqlite3.Connection:
        new = not self.path.exists() or self.path.stat().st_size == 0
        if new:
            # Create the file ourselves so it is 0600 whatever the umask; SQLite gives its
            # -wal and -shm files the permissions of the database file.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(self.path, 0o600)
        try:
            connection = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _open_error(exc) from exc
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SpoolFileTooNew(f"written by a newer sentinel-durable (schema {version} > {SCHEMA_VERSION})")
            if not new:
                result = connection.execute("PRAGMA quick_check").fetchone()[0]
                if result != "ok":
                    raise SpoolFileCorrupt(f"integrity check failed: {result}")
            if not _has_schema(connection):
                # A new file, or one whose schema never reached the disk (a power cut right
                # after it was created leaves SQLite's header and no table): it holds nothing.
                self._create_schema(connection)
                version = SCHEMA_VERSION
                if durability == "power":
                    fsync_directory(self.path.parent)  # the file's name survives a power cut too
            else:
                self.topic = _recorded_topic(connection)  # None: written before files recorded it (schema 1)
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise SpoolFileUnavailable(f"cannot use WAL journal mode (got {mode})")
            # process: a commit survives the process being killed (WAL, no fsync per commit).
            # power: inserts are fsynced (see insert); claims and acks need not be, since losing
            # one only means sending a batch twice.
            connection.execute("PRAGMA synchronous = NORMAL")
            # A write, so a file another tool holds locked is found busy here (and retried later).
            # The version stays: a schema-1 file becomes 2 only once its topic is recorded.
            connection.execute(f"PRAGMA user_version = {version}")
        except (SpoolFileCorrupt, SpoolFileUnavailable):
            connection.close()
            raise
        except sqlite3.Error as exc:
            connection.close()
            raise _open_error(exc) from exc
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{self.path}{suffix}", 0o600)
        return connection

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        """The table, the recorded topic and the schema version in one fsynced transaction, in
        every durability mode (once per file): a file is never used before its schema is on disk.

        Done before switching to WAL: in rollback-journal mode with ``synchronous = FULL`` the
        commit writes and fsyncs the database file itself, where a WAL commit at ``NORMAL``
        would leave only the header (written by the switch) on disk.
        """
        connection.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect before the first table
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(self.SQL_CREATE)
            connection.execute(self.SQL_CREATE_META)
            if self.topic is not None:
                connection.execute(self.SQL_SET_TOPIC, (self.topic,))
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def record_topic(self, topic: str) -> None:
        """Record ``topic`` as the file's destination (a file written before topics were recorded)."""
        with self.lock:
            if self.closed:
                raise SpoolClosed(f"{self.path.name} is closed")
            with self._transaction() as cursor:
                cursor.execute(self.SQL_CREATE_META)
                cursor.execute(self.SQL_SET_TOPIC, (topic,))
                cursor.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.topic = topic

    def adopt(self) -> None:
        """Take over a file left by another process: claimed rows go back to pending."""
        with self.lock:
            if self.closed:
                return
            with self._transaction() as cursor:
                cursor.execute(self.SQL_RESET_CLAIMED)
            self._load_counts()
            self.cursor = 0

    def _load_counts(self) -> None:
        counts = dict(self._connection.execute(self.SQL_COUNT_BY_STATUS).fetchall())
        self.pending = counts.get(AckStatus.READY, 0) + counts.get(AckStatus.INITED, 0)
        self.in_flight = counts.get(AckStatus.UNACK, 0)
        self.dead_letters = counts.get(AckStatus.ACK_FAILED, 0)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        cursor = self._connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    # -- the queue --------------------------------------------------------------------------

    def insert(self, records: Sequence[SpoolRecord]) -> None:
        """Append ``records`` as pending; fsynced in power mode."""
        now = time.time()
        seal = self._cipher.seal if self._cipher is not None else None
        rows = [
            (seal(r.data, r.event_id) if seal else r.data, now, r.event_id, r.service_name, r.model, r.event_time_ms)
            for r in records
        ]
        with self.lock:
            if self.closed:
                raise SpoolClosed(f"{self.path.name} is closed")
            if self._fsync_inserts:
                self._connection.execute("PRAGMA synchronous = FULL")
            try:
                if len(rows) == 1:  # one statement is its own transaction: no BEGIN/COMMIT round trips
                    first = self._connection.execute(self.SQL_INSERT, rows[0]).lastrowid or 0
                else:
                    with self._transaction() as cursor:
                        # Without AUTOINCREMENT, a new row takes max(_id) + 1, which can be below
                        # the cursor once the newest rows were acked: the cursor moves back to it.
                        first = (cursor.execute(self.SQL_MAX_ID).fetchone()[0] or 0) + 1
                        cursor.executemany(self.SQL_INSERT, rows)
            finally:
                if self._fsync_inserts:
                    self._connection.execute("PRAGMA synchronous = NORMAL")
            self.pending += len(rows)
            self.cursor = min(self.cursor, first)

    def claim(self, limit: int) -> list[ClaimedRecord]:
        with self.lock:
            if self.closed or self.pending <= 0:
                return []
            rows = self._connection.execute(self.SQL_CLAIM, (self.cursor, limit)).fetchall()
            if not rows and self.cursor:  # cannot happen if the cursor is right; never strand rows
                logger.warning("spool cursor of %s was past pending rows; rescanning", self.path.name)
                self.cursor = 0
                rows = self._connection.execute(self.SQL_CLAIM, (0, limit)).fetchall()
            self.pending -= len(rows)
            self.in_flight += len(rows)
            if rows:
                self.cursor = max(row[0] for row in rows) + 1
            records = [ClaimedRecord(*row) for row in rows]
            if any(is_sealed(record.data) for record in records) or self._cipher is not None:
                records = self._open_sealed(records)
        return records

    def _open_sealed(self, records: list[ClaimedRecord]) -> list[ClaimedRecord]:
        """Decrypt sealed bodies (lock held); those that cannot be opened are dead-lettered at once."""
        opened, unreadable = [], []
        for record in records:
            if not is_sealed(record.data):
                opened.append(record)
                continue
            try:
                if self._cipher is None:
                    raise CannotDecrypt("the event is encrypted and no encryption_key is set")
                opened.append(record._replace(data=self._cipher.open(record.data, record.event_id)))
            except CannotDecrypt as exc:
                unreadable.append((str(exc), record.row_id))
        if unreadable:
            with self._transaction() as cursor:
                cursor.executemany(self.SQL_DEAD_LETTER, unreadable)
            self.in_flight -= len(unreadable)
            self.dead_letters += len(unreadable)
            self.dead_lettered.extend(row_id for _, row_id in unreadable)
            logger.error("dead-lettered %d events of %s: %s", len(unreadable), self.path.name, unreadable[0][0])
        return opened

    def _settle(self, sql: str, params: list[tuple[object, ...]]) -> int:
        """Run ``sql`` once per row in one transaction; rows that changed (0 once closed)."""
        with self.lock:
            if self.closed:
                return 0
            with self._transaction() as cursor:
                cursor.executemany(sql, params)
                return int(cursor.rowcount)  # the rows changed, summed over the statements

    def delete(self, row_ids: Sequence[int]) -> None:
        """Delete delivered (in-flight) rows."""
        changed = self._settle(self.SQL_DELETE, [(row_id,) for row_id in row_ids])
        with self.lock:
            self.in_flight -= changed

    def release(self, row_ids: Sequence[int], error: str | None, count_attempt: bool) -> None:
        increment = 1 if count_attempt else 0
        changed = self._settle(self.SQL_RELEASE, [(increment, error, row_id) for row_id in row_ids])
        with self.lock:
            self.in_flight -= changed
            self.pending += changed
            if row_ids:
                self.cursor = min(self.cursor, min(row_ids))

    def dead_letter(self, row_ids: Sequence[int], error: str) -> None:
        changed = self._settle(self.SQL_DEAD_LETTER, [(error, row_id) for row_id in row_ids])
        with self.lock:
            self.in_flight -= changed
            self.dead_letters += changed
            self.dead_lettered.extend(row_ids)

    def drop_oldest_pending(
        self, nbytes: int, older_than: float | None = None, event_ids: list[str] | None = None
    ) -> int:
        """Delete the oldest pending rows, up to ``nbytes`` of them (or those spooled before
        ``older_than``), in one transaction; returns how many, and adds their ids to ``event_ids``.
        Rows claimed meanwhile are untouched."""
        with self.lock:
            if self.closed:
                return 0
            with self._transaction() as cursor:
                doomed: list[tuple[int, str]] = []
                freed = 0
                page = cursor.execute(self.SQL_OLDEST_PENDING_PAGE, (self.cursor, 10_000)).fetchall()
                for row_id, spooled_at, size, event_id in page:
                    if older_than is not None and spooled_at >= older_than:
                        break  # spool order is time order: the rest are younger
                    doomed.append((row_id, event_id))
                    freed += size + ROW_OVERHEAD
                    if older_than is None and freed >= nbytes:
                        break
                removed = 0
                for row_id, event_id in doomed:
                    deleted = cursor.execute(self.SQL_DELETE_PENDING, (row_id,)).rowcount
                    removed += deleted
                    if deleted and event_ids is not None:
                        event_ids.append(event_id)
            self.pending -= removed
            return removed

    def oldest_spooled_at(self) -> float | None:
        with self.lock:
            if self.closed:
                return None
            row = self._connection.execute(self.SQL_FIRST_UNSETTLED).fetchone()
        return None if row is None else float(row[1])

    def first_unsettled_id(self) -> int | None:
        """The lowest _id still pending or in flight (None when none is)."""
        with self.lock:
            if self.closed:
                return None
            row = self._connection.execute(self.SQL_FIRST_UNSETTLED).fetchone()
        return None if row is None else int(row[0])

    def requeue_dead_letters(self) -> int:
        with self.lock:
            with self._transaction() as cursor:
                moved = cursor.execute(self.SQL_REQUEUE_DEAD).rowcount
            self.dead_letters -= moved
            self.pending += moved
            self.cursor = 0
        return moved

    def move_dead_letters(self, target: _SpoolFile) -> int:
        """Requeue the dead letters into ``target`` (a file for another topic): pending there, gone
        from here. Written there first, and fsynced (``target`` is a power-mode file, see ``new_file``:
        a power cut must not keep the delete and lose the insert): a crash in between duplicates them (same event
        ids), never loses them. Bodies are copied as they are (sealed ones stay sealed)."""
        with self.lock:
            rows = self._connection.execute(self.SQL_DEAD_LETTER_RECORDS).fetchall()
        if not rows:
            return 0
        target.insert([SpoolRecord(bytes(data), *rest) for _, data, *rest in rows])
        removed = self._settle(self.SQL_DELETE_DEAD, [(row[0],) for row in rows])
        with self.lock:
            self.dead_letters -= removed
        return len(rows)

    def purge_dead_letters(self) -> int:
        with self.lock:
            with self._transaction() as cursor:
                purged = cursor.execute(self.SQL_PURGE_DEAD).rowcount
            self.dead_letters -= purged
        return purged

    def max_row_id(self) -> int:
        with self.lock:
            if self.closed:
                return 0
            return int(self._connection.execute(self.SQL_MAX_ID).fetchone()[0] or 0)

    def unsettled_through(self, row_id: int) -> int:
        """Rows up to ``row_id`` still pending or in flight (a scan: for progress displays)."""
        with self.lock:
            if self.closed:
                return 0
            return int(self._connection.execute(self.SQL_UNSETTLED_THROUGH, (row_id,)).fetchone()[0])

    # -- size ----------------------------------------------------------------------------------

    def _pages(self) -> tuple[int, int, int]:
        """``(page size, pages, free pages)``; call with the lock held."""
        if self.closed:
            return 0, 0, 0
        page_size = self._connection.execute("PRAGMA page_size").fetchone()[0]
        pages = self._connection.execute("PRAGMA page_count").fetchone()[0]
        free = self._connection.execute("PRAGMA freelist_count").fetchone()[0]
        return int(page_size), int(pages), int(free)

    def used_bytes(self) -> int:
        """Bytes of database pages in use (free pages, reusable, are not counted)."""
        with self.lock:
            page_size, pages, free = self._pages()
        return (pages - free) * page_size

    def page_usage(self) -> tuple[int, int, int]:
        """``(page size, pages, free pages)``, read together."""
        with self.lock:
            return self._pages()

    def disk_bytes(self) -> int:
        return _disk_bytes(self.path)

    def shrink(self) -> None:
        """Give free pages back to the filesystem and truncate the WAL."""
        with self.lock:
            if self.closed:
                return
            # executescript steps the pragma to completion; execute() would free a single page.
            self._connection.executescript("PRAGMA incremental_vacuum;")
            self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def tally(self) -> tuple[int, int, int]:
        """``(pending, in flight, dead letters)``, read together."""
        with self.lock:
            return self.pending, self.in_flight, self.dead_letters

    # -- closing ----------------------------------------------------------------------------------

    def close(self, *, remove_if_empty: bool = False) -> bool:
        """Release the file (checkpointed); with ``remove_if_empty``, delete it if it holds no row
        (checked in SQL, under the lock, so no row committed meanwhile is lost). True if removed."""
        with self.lock:
            if self.closed:
                return False
            self.closed = True
            empty = False
            try:
                with contextlib.suppress(sqlite3.Error):  # on error: keep the file, it is not known empty
                    empty = remove_if_empty and not self._connection.execute(self.SQL_ANY_ROW).fetchone()[0]
                if not empty:
                    with contextlib.suppress(sqlite3.Error):
                        self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._connection.close()
                if empty:
                    for suffix in ("", "-wal", "-shm"):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(f"{self.path}{suffix}")
                    with contextlib.suppress(FileNotFoundError):
                        lock_path_for(self.path).unlink()  # while still locked: nobody adopts a ghost
            finally:
                _unlock(self.lock_fd)
                self.lock_fd = -1
            self.pending = self.in_flight = self.dead_letters = 0
        return empty

    def abandon(self) -> None:
        """In a forked child: never touch the parent's connection or lock again.

        Closing an inherited SQLite connection can disturb the parent's locks, so the
        connection is kept alive (unreachable) for the child's lifetime; the child's copy
        of the lock descriptor is closed without unlocking, which leaves the parent's lock held.
        """
        _ABANDONED.append(self._connection)
        self.closed = True
        if self.lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.lock_fd)
        self.lock_fd = -1


def _open_error(exc: sqlite3.Error) -> Exception:
    """A corrupt file is quarantined; anything else (locked, I/O, disk full) is tried again later."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return SpoolFileCorrupt(str(exc))
    return SpoolFileUnavailable(str(exc))


#: Connections inherited across fork(); kept referenced so they are never closed in the child.
_ABANDONED: list[sqlite3.Connection] = []


def fsync_directory(directory: Path) -> None:
    """Make the names in ``directory`` (files and directories created in it) survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- owner locks ---------------------------------------------------------------------------------


def _try_lock(lock_path: Path) -> int | None:
    """Lock ``lock_path`` for this process, or return None if another process holds it."""
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    # The file may have been removed (by an owner finishing with it) between our open and
    # our lock: then we locked an orphaned inode, and must try again from scratch.
    try:
        same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


def lock_path_for(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + LOCK_SUFFIX)


def owner_alive(db_path: Path) -> bool:
    """True when some process holds the file's owner lock (used by ``status``).

    Read-only: the lock file is opened for reading and probed with a shared lock, so the pid
    its owner wrote stays there (taking the lock would write ours).
    """
    try:
        fd = os.open(lock_path_for(db_path), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)  # closing releases the probe's lock
    return False


def owner_pid(db_path: Path) -> int | None:
    """The pid the last owner wrote into the lock file, if any."""
    try:
        text = lock_path_for(db_path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def quarantined_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.glob(f"{FILE_PREFIX}*{QUARANTINE_MARK}*") if not p.name.endswith(("-wal", "-shm"))
    )


def spool_files(directory: Path) -> list[Path]:
    """The spool files of a directory, oldest first (names start with their creation time)."""
    return sorted(p for p in directory.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}") if p.is_file())


def _new_file_name() -> str:
    return f"{FILE_PREFIX}{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}{FILE_SUFFIX}"


# --- reading a spool directory from outside (the command line) --------------------------------


@dataclass(frozen=True)
class FileReport:
    path: Path
    pending: int
    in_flight: int
    dead_letters: int
    disk_bytes: int
    oldest_pending_age_s: float | None
    owner_alive: bool
    owner_pid: int | None
    topic: str | None = None  # the topic its events go to (None: written before files recorded it)


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    attempts: int
    last_error: str
    spooled_at: float
    data: bytes = field(repr=False)

    def __repr__(self) -> str:
        return _repr_sized(self, self.data, ["event_id", "attempts", "last_error", "spooled_at"])


@contextlib.contextmanager
def _reader(path: Path, busy_timeout: float = 5.0) -> Iterator[sqlite3.Connection]:
    """A connection that only reads, for a short block of queries: the block is one fork
    section (see ``_ForkGate``), so a generator must not yield inside it (``_open_reader``)."""
    with _FORK_GATE.section(), _open_reader(path, busy_timeout) as connection:
        yield connection


@contextlib.contextmanager
def _open_reader(path: Path, busy_timeout: float = 5.0) -> Iterator[sqlite3.Connection]:
    """A connection that only reads (WAL lets it read beside a live owner's writes). Opened and
    closed inside fork sections; the caller puts its own queries in sections."""
    try:
        with _FORK_GATE.section():
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout)
    except sqlite3.Error as exc:
        raise SpoolFileCorrupt(f"{path.name}: cannot open: {exc}") from exc
    try:
        yield connection
    except sqlite3.DatabaseError as exc:
        raise SpoolFileCorrupt(f"{path.name}: {exc}") from exc
    finally:
        with _FORK_GATE.section():
            connection.close()


def _disk_bytes(path: Path) -> int:
    """What a spool file takes on disk: the database, its WAL and its shared-memory index."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(f"{path}{suffix}").st_size
    return total


def _tables(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute(_SpoolFile.SQL_TABLES)}


def _has_schema(connection: sqlite3.Connection) -> bool:
    """False for a file whose schema never reached the disk (a power cut right after it was created):
    such a file holds no event, and every reader treats it as empty."""
    return _SpoolFile.TABLE in _tables(connection)


def _recorded_topic(connection: sqlite3.Connection, tables: set[str] | None = None) -> str | None:
    if _SpoolFile.META_TABLE not in (_tables(connection) if tables is None else tables):
        return None
    row = connection.execute(_SpoolFile.SQL_GET_TOPIC).fetchone()
    return None if row is None else str(row[0])


def _file_state(connection: sqlite3.Connection) -> tuple[dict[int, int] | None, float | None, str | None]:
    """A file's row counts by status (None: the file has no schema, so no rows), when its oldest
    unsettled row was spooled, and its recorded topic, read together."""
    tables = _tables(connection)
    if _SpoolFile.TABLE not in tables:
        return None, None, _recorded_topic(connection, tables)
    counts = dict(connection.execute(_SpoolFile.SQL_COUNT_BY_STATUS).fetchall())
    first = connection.execute(_SpoolFile.SQL_FIRST_UNSETTLED).fetchone()
    return counts, None if first is None else float(first[1]), _recorded_topic(connection, tables)


def recorded_topic(path: Path) -> str | None:
    """The topic a spool file records for its events (None: none recorded, or no schema yet)."""
    with _reader(path) as connection:
        return _recorded_topic(connection)


def inspect_file(path: Path) -> FileReport:
    with _reader(path) as connection:
        state, oldest, topic = _file_state(connection)
    counts = state or {}
    size = _disk_bytes(path)
    return FileReport(
        path=path,
        pending=counts.get(AckStatus.READY, 0) + counts.get(AckStatus.INITED, 0),
        in_flight=counts.get(AckStatus.UNACK, 0),
        dead_letters=counts.get(AckStatus.ACK_FAILED, 0),
        disk_bytes=size,
        oldest_pending_age_s=max(0.0, time.time() - oldest) if oldest is not None else None,
        owner_alive=owner_alive(path),
        owner_pid=owner_pid(path),
        topic=topic,
    )


class _Backlog(NamedTuple):
    """What an orphan holds, read without owning it."""

    topic: str | None
    pending: int  # pending and in flight: pending once adopted
    dead_letters: int
    oldest_spooled_at: float | None
    disk_bytes: int


#: How long a read-only count of an orphan waits for a lock: long enough for our own adoption
#: pass's short writes (a WAL reader is refused while the file is opened or its claims reset),
#: far below a busy_timeout, so a file another tool holds locked never stalls stats().
_BACKLOG_READ_WAIT = 0.25


def _read_backlog(path: Path) -> _Backlog | None:
    """An orphan's counts, read-only, waiting at most ``_BACKLOG_READ_WAIT``; None when they cannot be read now."""
    try:
        size = _disk_bytes(path)
        with _reader(path, busy_timeout=_BACKLOG_READ_WAIT) as connection:
            if connection.execute("PRAGMA user_version").fetchone()[0] > SCHEMA_VERSION:
                return None  # left alone by adoption
            counts, oldest, topic = _file_state(connection)
            if counts is None:
                return None
    except (SpoolFileCorrupt, sqlite3.Error, OSError):
        return None
    return _Backlog(
        topic=topic,
        pending=sum(counts.get(s, 0) for s in (AckStatus.INITED, AckStatus.READY, AckStatus.UNACK)),
        dead_letters=counts.get(AckStatus.ACK_FAILED, 0),
        oldest_spooled_at=oldest,
        disk_bytes=size,
    )


def read_events(
    path: Path, *, include_dead_letters: bool = False, cipher: SpoolCipher | None = None
) -> Iterator[bytes]:
    """The wire JSON of every event in the file (pending and in flight; dead letters if asked), in spool order.

    Encrypted bodies are opened with ``cipher``; without it they raise ``CannotDecrypt``.
    """
    statuses = [AckStatus.INITED, AckStatus.READY, AckStatus.UNACK]
    if include_dead_letters:
        statuses.append(AckStatus.ACK_FAILED)
    query = f"{_SpoolFile.SQL_EVENTS_IN_ORDER} ({', '.join('?' * len(statuses))}) ORDER BY _id"
    with _open_reader(path) as connection:
        with _FORK_GATE.section():  # the reads are in sections; the yields (to the caller) are not
            if not _has_schema(connection):
                return
            cursor = connection.execute(query, statuses)
        while True:
            with _FORK_GATE.section():
                rows = cursor.fetchmany(500)
            if not rows:
                return
            for data, event_id in rows:
                body = bytes(data)
                if is_sealed(body):
                    if cipher is None:
                        raise CannotDecrypt(f"{path.name} holds encrypted events: set SENTINEL_ENCRYPTION_KEY")
                    body = cipher.open(body, event_id)
                yield body


def read_dead_letters(path: Path) -> list[DeadLetter]:
    with _reader(path) as connection:
        rows = connection.execute(_SpoolFile.SQL_DEAD_LETTERS).fetchall() if _has_schema(connection) else []
    return [
        DeadLetter(event_id, attempts, error or "", spooled_at, bytes(data))
        for _, data, event_id, attempts, error, spooled_at in rows
    ]


@contextlib.contextmanager
def owned_file(path: Path) -> Iterator[_SpoolFile]:
    """Take ownership of a spool file whose owner is gone (to change it); raises ``SpoolFileBusy`` otherwise."""
    lock_fd = _try_lock(lock_path_for(path))
    if lock_fd is None:
        pid = owner_pid(path)
        raise SpoolFileBusy(f"{path.name} is in use by process {pid if pid is not None else '?'}")
    try:
        spool_file = _SpoolFile(path, lock_fd, durability="process", busy_timeout=5.0)
    except BaseException:
        _unlock(lock_fd)
        raise
    try:
        spool_file.adopt()
        yield spool_file
    finally:
        spool_file.close()


@contextlib.contextmanager
def new_file(directory: Path, topic: str) -> Iterator[_SpoolFile]:
    """A new spool file in ``directory`` recording ``topic``, owned while in the block; left for
    a client of that topic to adopt (removed if still empty).

    In power mode whatever the spool's: its events were moved from another file (they are rare
    and few), so its name, schema and inserts are on disk before the other file forgets them."""
    for _ in range(5):
        path = directory / _new_file_name()
        lock_fd = _try_lock(lock_path_for(path))
        if lock_fd is not None:
            break
    else:
        raise SpoolFileBusy(f"cannot lock a new spool file in {directory}")
    try:
        spool_file = _SpoolFile(path, lock_fd, durability="power", busy_timeout=5.0, topic=topic)
    except BaseException:
        _unlock(lock_fd)
        raise
    try:
        yield spool_file
    finally:
        spool_file.close(remove_if_empty=True)


# --- the spool -----------------------------------------------------------------------------------


class _Ticket:
    """One caller's records waiting for a group commit."""

    __slots__ = ("done", "error", "records")

    def __init__(self, records: Sequence[SpoolRecord]) -> None:
        self.records = records
        self.done = False
        self.error: BaseException | None = None


_LIVE_SPOOLS: weakref.WeakSet[Spool] = weakref.WeakSet()


class Spool:
    """A spool directory as one queue: this process's active file plus files it adopted.

    ``put_many`` writes to the active file (group commit: concurrent callers share one
    transaction, and in ``power`` mode one fsync). ``claim`` takes from adopted files first,
    oldest first, then from the active file. Files left by dead owners are adopted by
    :meth:`adopt_orphans` (the flusher calls it off the caller's thread), drained, and removed
    once empty.

    ``topic`` is recorded in the files this spool creates, and only files recording the same
    topic are adopted (``adopt_topic``, for the command line's ``drain --topic``, adopts the
    files of another topic instead). A file that records no topic (written before files
    recorded it) is adopted and stamped with ``topic``. ``topic=None`` (tools and tests)
    records nothing and adopts every file.
    """

    #: In async mode, the buffer is committed once it holds this many events, and senders wait
    #: while it is that full: what a crash can lose is this buffer plus the one being committed.
    ASYNC_BUFFER_LIMIT = 1000
    #: In async mode with batch_timeout=0, the buffer is committed at least this often.
    ASYNC_DEFAULT_INTERVAL = 0.05

    def __init__(
        self,
        directory: Path,
        *,
        durability: Durability = "process",
        max_spool_bytes: int = 1 << 30,
        overflow: Overflow = "block",
        max_event_age: float | None = None,
        write_timeout: float = 10.0,
        batch_timeout: float = 0.0,
        cipher: SpoolCipher | None = None,
        topic: str | None = None,
        adopt_topic: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.cipher = cipher
        self.topic = topic
        self.adopt_topic = topic if adopt_topic is None else adopt_topic
        self.durability = durability
        self.max_spool_bytes = max_spool_bytes
        self.overflow = overflow
        self.max_event_age = max_event_age
        self.write_timeout = write_timeout
        self.async_interval = batch_timeout or self.ASYNC_DEFAULT_INTERVAL
        self.dropped: Counter[str] = Counter()
        #: ``on_drop(reason, event_ids)``: told of the pending events dropped by ``drop_oldest`` or
        #: ``max_event_age`` (the client resolves a ``send(wait=True)`` waiting for one of them).
        self.on_drop: Callable[[str, Sequence[str]], None] | None = None
        self.quarantined: list[str] = []
        self._closed = False
        self._init_process_state()
        _LIVE_SPOOLS.add(self)

    def _init_process_state(self) -> None:
        """Everything that belongs to one process: files, locks, threads."""
        self._adopted: list[_SpoolFile] = []
        self._files_lock = threading.Lock()  # guards _adopted and _active
        # One adoption pass at a time: a flush must not take its mark while another thread
        # holds a file it has locked but not yet added to _adopted.
        self._adopt_lock = threading.Lock()
        self._commit = threading.Condition()  # group commit and the async buffer
        self._waiting: list[_Ticket] = []
        self._leader = False
        self._space = threading.Condition()  # notified when rows leave the spool
        self._used_estimate = 0
        self._commits_since_measure = 0
        self.commits = 0  # transactions that wrote events (fewer than puts under group commit)
        self._buffer: list[SpoolRecord] = []
        self._buffered_since = 0.0  # time.monotonic() when the oldest buffered event came in
        self._buffer_write = threading.Lock()  # held from taking the buffer until it is on disk
        self._gate = threading.Condition()  # close() waits here for writers in put_many
        self._writers = 0
        self._warned_too_new: set[Path] = set()
        self._not_ours: set[Path] = set()  # files recording another topic (a recorded topic never changes)
        self._adopted_once = False  # the first adoption pass is done
        # Orphans that counts() reads without owning them: those an adoption pass is taking over
        # (from before it locks one until, under _files_lock, it is in _adopted or let go) and
        # those the last pass could not open (a tool holds them locked). Both are our backlog.
        self._adopting: set[Path] = set()
        self._unavailable: set[Path] = set()
        self._writer: threading.Thread | None = None
        self._writer_stop = threading.Event()
        self._prepare_directory()
        self._active = self._create_active_file()
        if self.durability == "async":
            self._start_writer()
        # Last: until now, other threads of a forked child wait in _ensure_owner.
        self._pid = os.getpid()

    # -- directory and files -----------------------------------------------------------------

    def _prepare_directory(self) -> None:
        missing = [d for d in (self.directory, *self.directory.parents) if not d.exists()]
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            if self.durability == "power":
                # A first start's directory survives a power cut: each directory we made, and
                # the entry naming it in its parent.
                for made in reversed(missing):
                    fsync_directory(made)
                    fsync_directory(made.parent)
        except OSError as exc:
            raise ConfigError(
                "spool_dir", f"cannot be created or secured: {exc.strerror}", str(self.directory)
            ) from exc
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise ConfigError("spool_dir", "is not writable", str(self.directory))

    def _create_active_file(self) -> _SpoolFile:
        for _ in range(5):
            path = self.directory / _new_file_name()
            try:
                lock_fd = _try_lock(lock_path_for(path))
            except OSError as exc:
                raise ConfigError("spool_dir", f"cannot create a spool file: {exc.strerror}", str(path)) from exc
            if lock_fd is None:
                continue
            try:
                return _SpoolFile(
                    path, lock_fd, durability=self.durability, busy_timeout=self.write_timeout, cipher=self.cipher,
                    topic=self.topic,
                )  # fmt: skip
            except SpoolFileCorrupt as exc:
                _unlock(lock_fd)
                raise ConfigError("spool_dir", f"cannot create a spool file: {exc}", str(path)) from exc
        raise ConfigError("spool_dir", "cannot lock a new spool file", str(self.directory))

    def adopt_orphans(self) -> int:
        """Lock and adopt every file of the directory whose owner is gone; returns how many.

        Files that fail to open or their integrity check are quarantined.
        """
        self._ensure_owner()
        with self._adopt_lock:
            adopted = self._adopt_orphans()
            self._adopted_once = True
            return adopted

    def _adopts(self, recorded: str | None) -> bool:
        """Whether this spool takes over a file recording ``recorded`` as its topic."""
        if self.topic is None:
            return True
        if recorded is None:  # no topic recorded: ours, unless we adopt another topic's files
            return self.adopt_topic == self.topic
        return recorded == self.adopt_topic

    def _adopt_orphans(self) -> int:
        with self._files_lock:
            held = {self._active.path, *(f.path for f in self._adopted)}
        adopted = 0
        paths = spool_files(self.directory)
        self._not_ours.intersection_update(paths)
        with self._files_lock:
            self._unavailable.intersection_update(paths)
        for path in paths:
            if path in held or path in self._not_ours:
                continue
            with self._files_lock:
                self._adopting.add(path)  # before the lock: counts() never misses it in between
            spool_file = None
            try:
                spool_file = self._adopt_file(path)
            finally:
                with self._files_lock:  # in one step, so counts() finds the file in exactly one place
                    self._adopting.discard(path)
                    if spool_file is not None:
                        self._adopted.append(spool_file)
            if spool_file is not None:
                logger.info("adopted spool file %s with %d pending events", path.name, spool_file.pending)
                adopted += 1
        self._measure_used()
        return adopted

    def _adopt_file(self, path: Path) -> _SpoolFile | None:
        """Lock, open and adopt one file of the directory; None if it is not ours, owned, empty or unusable."""
        with self._files_lock:
            self._unavailable.discard(path)
        if self.topic is not None:
            # Read before locking: a file for another topic is never locked or changed by us.
            try:
                recorded = recorded_topic(path)
            except (SpoolFileCorrupt, OSError):
                recorded = None  # opened below, under the lock, and quarantined if it is corrupt
            if recorded is not None and not self._adopts(recorded):
                self._not_ours.add(path)
                return None
        lock_fd = _try_lock(lock_path_for(path))
        if lock_fd is None:
            return None  # a live owner has it
        if not path.exists():  # removed since we listed it: drop the lock file we just made
            with contextlib.suppress(FileNotFoundError):
                lock_path_for(path).unlink()
            _unlock(lock_fd)
            return None
        try:
            spool_file = _SpoolFile(
                path, lock_fd, durability=self.durability, busy_timeout=self.write_timeout, cipher=self.cipher,
                topic=self.adopt_topic,
            )  # fmt: skip
            if not self._adopts(spool_file.topic):  # recorded by someone else since we looked
                self._not_ours.add(path)
                spool_file.close()
                return None
            if spool_file.topic is None and self.topic is not None:
                logger.warning(
                    "spool file %s records no topic (written by an older sentinel-durable); adopting it for"
                    " topic %r and recording that topic in it", path.name, self.topic,
                )  # fmt: skip
                spool_file.record_topic(self.topic)
            spool_file.adopt()
        except SpoolFileTooNew as exc:
            if path not in self._warned_too_new:
                self._warned_too_new.add(path)
                logger.warning("leaving spool file %s alone: %s", path.name, exc)
            _unlock(lock_fd)
            return None
        except SpoolFileUnavailable as exc:  # locked by a tool, I/O error, disk full: try again later
            logger.info("cannot open spool file %s now (%s); will try again", path.name, exc)
            with self._files_lock:
                self._unavailable.add(path)  # still our backlog: counts() reads it
            _unlock(lock_fd)
            return None
        except (SpoolFileCorrupt, sqlite3.DatabaseError) as exc:
            self._quarantine(path, str(exc))
            with contextlib.suppress(FileNotFoundError):
                lock_path_for(path).unlink()
            _unlock(lock_fd)
            return None
        if spool_file.tally() == (0, 0, 0) and spool_file.close(remove_if_empty=True):
            return None  # nothing left in it
        return spool_file

    def _quarantine(self, path: Path, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = path.with_name(f"{path.name}{QUARANTINE_MARK}{stamp}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{path}{suffix}", f"{target}{suffix}")
        self.quarantined.append(target.name)
        logger.error("spool file %s is unreadable (%s); moved aside as %s", path.name, reason, target.name)

    def _files(self) -> list[_SpoolFile]:
        with self._files_lock:
            return [*self._adopted, self._active]

    # -- writing -----------------------------------------------------------------------------

    def put_many(self, records: Sequence[SpoolRecord]) -> bool:
        """Spool ``records`` in one transaction; on return they are as durable as the mode promises.

        Raises ``SpoolFullError`` when the overflow policy refuses them; then none is spooled.
        Returns False when ``overflow="drop_newest"`` dropped them (counted in ``dropped``).
        """
        self._ensure_owner()
        if not records:
            return True
        with self._gate:  # close() waits for writers that got in, and lets no new one in
            if self._closed:
                raise SpoolClosed("the spool is closed")
            self._writers += 1
        try:
            if not self._make_room(records):
                return False  # drop_newest: dropped and counted
            if self.durability == "async":
                self._buffer_records(records)
            else:
                self._group_commit(records)
            return True
        finally:
            with self._gate:
                self._writers -= 1
                if self._closed:  # only close() ever waits here
                    self._gate.notify_all()

    def _buffer_records(self, records: Sequence[SpoolRecord]) -> None:
        """Async mode: add to the in-memory buffer, first waiting while the writer is behind.

        The wait is what bounds a crash's loss: a sender never gets ahead of the writer by a
        full buffer (ASYNC_BUFFER_LIMIT events) or by a buffer older than batch_timeout. Without
        it, senders that hold the GIL starve the writer and the buffer grows without bound.
        A sender that waited ``write_timeout`` gets ``SpoolFullError``; its records are not buffered.
        """
        with self._commit:
            deadline: float | None = None
            while self._buffer and (
                len(self._buffer) >= self.ASYNC_BUFFER_LIMIT
                or time.monotonic() - self._buffered_since >= self.async_interval
            ):
                now = time.monotonic()
                deadline = now + self.write_timeout if deadline is None else deadline
                if now >= deadline:
                    # Typed as what it means to the caller: the spool cannot take the event now.
                    raise SpoolFullError(
                        f"the spool cannot take the event now: the async writer is behind ({len(self._buffer)}"
                        f" events buffered, not yet on disk) and did not catch up within write_timeout"
                        f" ({self.write_timeout:g}s); the event was not spooled",
                        spool_bytes=self._used_estimate,
                        max_spool_bytes=self.max_spool_bytes,
                    )
                self._commit.notify_all()  # the writer may be in its timed wait
                self._commit.wait(deadline - now)
            if not self._buffer:
                self._buffered_since = time.monotonic()
            self._buffer.extend(records)
            if len(self._buffer) >= self.ASYNC_BUFFER_LIMIT:
                self._commit.notify_all()

    def _group_commit(self, records: Sequence[SpoolRecord]) -> None:
        # Leader/follower group commit: the first caller to find no leader writes every
        # waiting caller's records in one transaction (one fsync in power mode) and wakes
        # them; the others wait for their ticket. A follower whose leader finished before
        # reaching its ticket becomes the next leader.
        ticket = _Ticket(records)
        with self._commit:
            self._waiting.append(ticket)
            deadline = time.monotonic() + self.write_timeout if self._leader else 0.0
            while self._leader and not ticket.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0 and (ticket in self._waiting or remaining < -self.write_timeout):
                    # Withdraw if still queued, so nothing is written after we report the failure;
                    # a leader that took our ticket gets one more write_timeout to finish.
                    if ticket in self._waiting:
                        self._waiting.remove(ticket)
                    raise SpoolFullError(
                        f"the spool cannot take the event now: a write waited write_timeout ({self.write_timeout:g}s)"
                        " for the one before it to reach the disk; the event was not spooled",
                        spool_bytes=self._used_estimate,
                        max_spool_bytes=self.max_spool_bytes,
                    )
                self._commit.wait(remaining if remaining > 0 else 0.05)
            if ticket.done:
                if ticket.error is not None:
                    raise ticket.error
                return
            self._leader = True
            group, self._waiting = self._waiting, []
        error: BaseException | None = None
        try:
            if len(group) == 1:
                self._active.insert(group[0].records)
            else:
                self._active.insert([record for member in group for record in member.records])
        except sqlite3.Error as exc:  # every member of the group gets the same, clear failure
            error = self._write_error(exc)
            error.__cause__ = exc
        except BaseException as exc:
            error = exc
        with self._commit:
            for member in group:
                member.done = True
                member.error = error
            self._leader = False
            if len(group) > 1 or self._waiting:  # followers to release, or one to lead next
                self._commit.notify_all()
        if error is not None:
            raise error
        self._count_written(group)

    def _count_written(self, group: Iterable[_Ticket]) -> None:
        self.commits += 1
        self._used_estimate += sum(len(r.data) + ROW_OVERHEAD for member in group for r in member.records)
        self._commits_since_measure += 1
        if self._commits_since_measure >= 256:
            self._measure_used()

    def _write_error(self, error: sqlite3.Error) -> Exception:
        if isinstance(error, sqlite3.OperationalError) and "full" in str(error).lower():
            return SpoolFullError(
                f"the disk holding the spool is full ({error})",
                spool_bytes=self._used_estimate,
                max_spool_bytes=self.max_spool_bytes,
            )
        return OSError(f"spool write failed: {error}")

    def commit_buffered(self) -> None:
        """In async mode, write what is buffered in memory now (``flush`` and ``close`` call it)."""
        self._ensure_owner()
        # Held until the records are on disk, so a flush mark taken after this returns (by
        # any thread) sees every event that was buffered before it was called.
        with self._buffer_write:
            with self._commit:
                records, self._buffer = self._buffer, []
                self._commit.notify_all()  # senders held back by a full or old buffer
            if not records:
                return
            try:
                self._active.insert(records)
            except sqlite3.Error as exc:
                with self._commit:  # keep them for the next attempt rather than lose them
                    self._buffer[:0] = records
                    self._buffered_since = time.monotonic() - self.async_interval  # overdue: senders wait
                raise self._write_error(exc) from exc
        self._count_written([_Ticket(records)])

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _start_writer(self) -> None:
        self._writer_stop = threading.Event()
        self._writer = threading.Thread(target=self._run_writer, name="sentinel-durable-spool-writer", daemon=True)
        self._writer.start()

    def _run_writer(self) -> None:
        while not self._writer_stop.is_set():
            with self._commit:
                # Commit once the buffer is full or its oldest event is batch_timeout old;
                # senders that find it so notify us (see _buffer_records).
                while not self._writer_stop.is_set() and len(self._buffer) < self.ASYNC_BUFFER_LIMIT:
                    due = self._buffered_since + self.async_interval - time.monotonic()
                    if self._buffer and due <= 0:
                        break
                    self._commit.wait(due if self._buffer else self.async_interval)
            try:
                self.commit_buffered()
            except Exception:
                logger.exception("async spool write failed; the events stay buffered and are retried")
                self._writer_stop.wait(self.async_interval)

    # -- bounds ------------------------------------------------------------------------------

    def _measure_used(self) -> int:
        used = sum(f.used_bytes() for f in self._files())
        self._used_estimate = used
        self._commits_since_measure = 0
        return used

    def _make_room(self, records: Sequence[SpoolRecord]) -> bool:
        """Apply the overflow policy; False when the records are to be dropped."""
        # Pages grow a few at a time (table and index), so keep room for that beyond the rows.
        incoming = sum(len(r.data) + ROW_OVERHEAD for r in records) + GROWTH_SLACK
        if self._used_estimate + incoming <= self.max_spool_bytes * 0.9:
            return True
        if self._measure_used() + incoming <= self.max_spool_bytes:
            return True
        if incoming > self.max_spool_bytes:
            raise SpoolFullError(
                f"{len(records)} events of {incoming} bytes can never fit", spool_bytes=self._used_estimate,
                max_spool_bytes=self.max_spool_bytes,
            )  # fmt: skip
        if self.overflow == "drop_newest":
            self._count_drop("overflow_newest", len(records))
            return False
        if self.overflow == "drop_oldest":
            self._drop_oldest(incoming)
            return True
        if self.overflow == "block":
            deadline = time.monotonic() + self.write_timeout
            with self._space:
                while self._measure_used() + incoming > self.max_spool_bytes:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._space.wait(min(remaining, 0.5))
                else:
                    return True
        raise SpoolFullError(
            f"spool is at max_spool_bytes (overflow={self.overflow})",
            spool_bytes=self._used_estimate,
            max_spool_bytes=self.max_spool_bytes,
        )

    def _drop_oldest(self, incoming: int) -> None:
        dropped = 0
        event_ids: list[str] = []
        while self._measure_used() + incoming > self.max_spool_bytes:
            need = self._used_estimate + incoming - self.max_spool_bytes
            removed = self._delete_oldest_pending(need, event_ids)
            if removed == 0:
                raise SpoolFullError(
                    "spool is full of events in flight or dead-lettered; nothing pending to drop",
                    spool_bytes=self._used_estimate,
                    max_spool_bytes=self.max_spool_bytes,
                )
            dropped += removed
        self._count_drop("overflow_oldest", dropped, event_ids)

    def _delete_oldest_pending(self, nbytes: int, event_ids: list[str] | None = None) -> int:
        for spool_file in self._files():
            removed = spool_file.drop_oldest_pending(nbytes, event_ids=event_ids)
            if removed:
                return removed
        return 0

    def expire(self) -> int:
        """Drop pending events older than ``max_event_age``; returns how many."""
        self._ensure_open()
        if self.max_event_age is None:
            return 0
        cutoff = time.time() - self.max_event_age
        total = 0
        event_ids: list[str] = []
        for spool_file in self._files():
            while removed := spool_file.drop_oldest_pending(0, older_than=cutoff, event_ids=event_ids):
                total += removed
        if total:
            self._count_drop("expired", total, event_ids)
            self._rows_left()
        return total

    def _count_drop(self, reason: str, count: int, event_ids: Sequence[str] = ()) -> None:
        if count:
            self.dropped[reason] += count
            logger.warning("dropped %d events from the spool (%s)", count, reason)
        if event_ids and self.on_drop is not None:
            self.on_drop(reason, event_ids)

    # -- draining ------------------------------------------------------------------------------

    def claim(self, limit: int) -> Claim | None:
        """Claim up to ``limit`` pending events, oldest file first; None when nothing is pending."""
        self._ensure_open()
        for spool_file in self._files():
            records = spool_file.claim(limit)
            if records:
                return Claim(spool_file, records)
        return None

    def ack(self, claim: Claim, records: Sequence[ClaimedRecord] | None = None) -> None:
        """Delivered: delete the records (all of the claim by default) in one transaction."""
        self._ensure_owner()
        rows = claim.records if records is None else records
        if rows:
            claim.file.delete([r.row_id for r in rows])
            self._rows_left(claim.file)

    def release(
        self,
        claim: Claim,
        records: Sequence[ClaimedRecord] | None = None,
        error: str | None = None,
        *,
        count_attempt: bool = True,
    ) -> None:
        """Not delivered this time: back to pending for a later retry, keeping ``error``.

        ``count_attempt=False`` when the record itself was not at fault (the broker was
        away): only failures of the record count toward ``max_retries``.
        """
        self._ensure_owner()
        rows = claim.records if records is None else records
        if rows:
            claim.file.release([r.row_id for r in rows], error, count_attempt)

    def return_in_flight(self, claim: Claim) -> None:
        """After a failure part-way through settling: every in-flight row of the file back to pending."""
        claim.file.adopt()

    def dead_letter(self, claim: Claim, records: Sequence[ClaimedRecord], error: str) -> None:
        """Failed for good: keep the records aside with their error and attempt count."""
        self._ensure_owner()
        if records:
            claim.file.dead_letter([r.row_id for r in records], error)
            self._rows_left(claim.file)

    def _rows_left(self, spool_file: _SpoolFile | None = None) -> None:
        """Rows left the spool: remove a drained adopted file, shrink, and wake blocked writers."""
        if spool_file is not None and spool_file is not self._active and spool_file.tally() == (0, 0, 0):
            with self._files_lock:
                if spool_file in self._adopted:
                    self._adopted.remove(spool_file)
            if spool_file.close(remove_if_empty=True):  # checked in SQL: only a truly empty file goes
                logger.debug("removed drained spool file %s", spool_file.path.name)
        elif spool_file is not None:
            pending, in_flight, _ = spool_file.tally()
            page_size, pages, free_pages = spool_file.page_usage()
            free = page_size * free_pages
            drained = pending == 0 and in_flight == 0
            if (drained and free >= SHRINK_DRAINED_AT) or (free >= SHRINK_AT and free_pages > 0.75 * pages):
                spool_file.shrink()  # give the free pages back to the filesystem
        self._measure_used()
        with self._space:
            self._space.notify_all()

    def flush_mark(self) -> FlushMark:
        """Remember what is in the spool now, so ``settled(mark)`` can tell when it has all gone."""
        self.commit_buffered()
        marks = {f.path: (f.max_row_id(), len(f.dead_lettered)) for f in self._files()}
        return FlushMark(marks, sum(self.dropped.values()))

    def settled(self, mark: FlushMark) -> tuple[bool, bool]:
        """``(every event of the mark delivered or given up, whether any was dead-lettered or dropped)``.

        Cheap: one indexed lookup per file (the lowest unsettled row id).
        """
        self._ensure_owner()
        by_path = {f.path: f for f in self._files()}
        done, lost = True, sum(self.dropped.values()) > mark.dropped
        for path, (last, dead_before) in mark.last_ids.items():
            spool_file = by_path.get(path)
            if spool_file is None:
                continue  # an adopted file that was drained and removed
            first = spool_file.first_unsettled_id()
            done = done and (first is None or first > last)
            lost = lost or any(row_id <= last for row_id in spool_file.dead_lettered[dead_before:])
        return done, lost

    def unsettled_count(self, mark: FlushMark) -> int:
        """How many events of the mark are still pending or in flight (scans: for progress displays)."""
        self._ensure_owner()
        by_path = {f.path: f for f in self._files()}
        return sum(
            by_path[path].unsettled_through(last) for path, (last, _) in mark.last_ids.items() if path in by_path
        )

    # -- inspection ------------------------------------------------------------------------------

    def counts(self, *, orphans: bool = False) -> SpoolCounts:
        """What the files of this spool hold; with ``orphans``, also the files of our topic that
        an adoption pass takes over and has not yet (read, never waited for: see ``_orphans_to_adopt``)."""
        self._ensure_owner()
        with self._files_lock:  # with the sets, so each file is counted in one place only
            files = [*self._adopted, self._active]
            adopting, unavailable = set(self._adopting), set(self._unavailable)
        orphans_found = self._orphans_to_adopt({f.path for f in files}, adopting, unavailable) if orphans else []
        oldest = [t for t in (f.oldest_spooled_at() for f in files) if t is not None]
        oldest += [o.oldest_spooled_at for o in orphans_found if o.oldest_spooled_at is not None]
        tallies = [f.tally() for f in files]
        return SpoolCounts(
            pending=sum(t[0] for t in tallies) + len(self._buffer) + sum(o.pending for o in orphans_found),
            in_flight=sum(t[1] for t in tallies),
            dead_letters=sum(t[2] for t in tallies) + sum(o.dead_letters for o in orphans_found),
            disk_bytes=sum(f.disk_bytes() for f in files) + sum(o.disk_bytes for o in orphans_found),
            used_bytes=self._used_estimate,
            oldest_pending_age_s=max(0.0, time.time() - min(oldest)) if oldest else None,
            files=len(files) + len(orphans_found),
            commits=self.commits,
            dropped=dict(self.dropped),
            quarantined=list(self.quarantined),
        )

    def _orphans_to_adopt(self, owned: set[Path], adopting: set[Path], unavailable: set[Path]) -> list[_Backlog]:
        """The files of our topic not (yet) ours that an adoption pass takes over, read read-only.

        Until the first pass is done, every orphan of the directory; then those a pass is taking
        over or could not open. Never waits: a read of a WAL file is not blocked by a writer,
        and a file that cannot be read at once (or is not ours, or too new) is left out.
        """
        candidates = spool_files(self.directory) if not self._adopted_once else sorted(adopting | unavailable)
        backlog = []
        for path in candidates:
            if path in owned or path in self._not_ours:
                continue
            if path not in adopting:
                # Probed under _files_lock: a pass marks a file as adopting (under it) before it
                # locks the file, so the probe's shared lock never makes our pass find it busy.
                with self._files_lock:
                    ours = path in self._adopting or any(f.path == path for f in self._adopted)
                    if not ours and owner_alive(path):
                        continue  # a live process owns it (one that adopted it since our last pass, too)
            found = _read_backlog(path)
            if found is not None and self._adopts(found.topic):
                backlog.append(found)
        return backlog

    @property
    def active_path(self) -> Path:
        return self._active.path

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def _ensure_open(self) -> None:
        if self._closed:
            raise SpoolClosed("the spool is closed")
        self._ensure_owner()

    def _ensure_owner(self) -> None:
        if self._pid != os.getpid():
            # First use in a forked child: start a file of our own (the parent's were
            # abandoned by the at-fork hook). Done here, not in the hook, so a child that
            # never uses the spool creates nothing. Several threads of the child may get
            # here at once: one re-initialises, the others wait for it.
            with _fork_lock:
                if self._pid != os.getpid():
                    self._init_process_state()

    def _abandon_after_fork(self) -> None:
        # Runs in the child right after fork(), single-threaded: the parent's files, locks
        # and threads are not ours. Events buffered in memory (async mode) are the parent's.
        active = getattr(self, "_active", None)  # gone already if we are a grandchild
        for spool_file in [*self._adopted, *([active] if active is not None else [])]:
            spool_file.abandon()
        self._adopted = []
        self._buffer = []
        if active is not None:
            del self._active  # nothing may write to the parent's file from here

    def close(self, timeout: float | None = None) -> None:
        """Let writers already in finish, write what is buffered, stop the writer thread and
        release every file (deleting those left empty). Never raises for undelivered events:
        a failure to write the buffer is logged, and the file is kept."""
        self._ensure_owner()
        deadline = time.monotonic() + (self.write_timeout if timeout is None else timeout)
        with self._gate:
            if self._closed:
                return
            self._closed = True
            self._gate.wait_for(lambda: self._writers == 0, timeout=max(0.0, deadline - time.monotonic()))
        if self._writer is not None:
            self._writer_stop.set()
            with self._commit:
                self._commit.notify_all()
            self._writer.join(timeout=max(0.0, deadline - time.monotonic()))
        try:
            self.commit_buffered()
        except Exception:
            logger.exception("could not write %d buffered events while closing", len(self._buffer))
        for spool_file in self._files():
            keep = spool_file is self._active and self._buffer
            if spool_file.close(remove_if_empty=not keep):
                logger.debug("removed empty spool file %s", spool_file.path.name)
        _LIVE_SPOOLS.discard(self)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: Serialises the re-initialisation of spools in a forked child (replaced in every child,
#: since another thread of the parent may have held it at fork time).
_fork_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _fork_lock
    _fork_lock = threading.Lock()
    for spool in list(_LIVE_SPOOLS):
        try:
            spool._abandon_after_fork()
        except Exception:  # one spool's trouble must not leave the others' locks held
            logger.exception("could not release a spool after fork")


os.register_at_fork(after_in_child=_after_fork_in_child)
