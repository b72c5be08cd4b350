"""A spool file's layout: its table, statuses, names, and every SQL and PRAGMA string the spool runs.

A spool file is a SQLite database in persist-queue's ``SQLiteAckQueue`` layout, so that
``persistqueue.SQLiteAckQueue(path=directory, db_file_name=name, serializer=persistqueue.serializers.json)``
reads its pending events (``tests/test_spool_queue.py`` checks it). Beside persist-queue's columns
each row has its attempts, its last error, and the event id, service and model the transport puts
in the record's headers. ``data`` holds the event's wire JSON, exactly the Kafka record value (or
its sealed form, see ``crypto.py``); ``timestamp`` is when the event was spooled (epoch seconds).

There is no index on ``status``: every pending row of a file lies at or above the owner's cursor
(``file.py``), and a claim scans from there in rowid order — an index would cost a quarter of each
insert. The ``sentinel_meta`` table records the topic the file's events go to, written in the
transaction that creates the schema.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Literal

from ..errors import SpoolFileCorrupt, SpoolFileTooNew, SpoolFileUnavailable

__all__ = ["SCHEMA_VERSION", "AckStatus"]


class AckStatus:
    """persist-queue's status codes (``persistqueue.sqlackqueue.AckStatus``)."""

    INITED = 0  # persist-queue's put(); treated as ready when a file is adopted
    READY = 1  # pending: waiting for the flusher (claimed rows stay READY: the owner keeps them in memory)
    UNACK = 2  # persist-queue's "got, not yet acked"; never written by us, read as pending on adoption
    ACKED = 5  # persist-queue keeps acked rows; we delete them instead
    ACK_FAILED = 9  # dead letter: failed for good, kept with its last error


Durability = Literal["process", "power", "async"]
Overflow = Literal["block", "drop_oldest", "drop_newest", "error"]

#: 1: persist-queue's table and our columns; 2: the ``sentinel_meta`` table records the topic.
SCHEMA_VERSION = 2
FILE_PREFIX = "spool-"
FILE_SUFFIX = ".db"
LOCK_SUFFIX = ".lock"
QUARANTINE_MARK = ".corrupt-"

TABLE = "ack_queue_default"  # persist-queue's table for name="default"
META_TABLE = "sentinel_meta"  # what decides where the file's events go (key "topic")

_PENDING = f"({AckStatus.INITED}, {AckStatus.READY}, {AckStatus.UNACK})"

SQL_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    "_id INTEGER PRIMARY KEY, data BLOB, timestamp FLOAT, status INTEGER, "
    "attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, "
    "event_id TEXT, service_name TEXT, model TEXT, event_time_ms INTEGER)"
)
SQL_CREATE_META = f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
SQL_SET_TOPIC = f"INSERT OR REPLACE INTO {META_TABLE} (key, value) VALUES ('topic', ?)"
SQL_GET_TOPIC = f"SELECT value FROM {META_TABLE} WHERE key = 'topic'"
SQL_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"

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
SQL_DELETE_PENDING = f"DELETE FROM {TABLE} WHERE _id = ? AND status = {AckStatus.READY}"
#: The same for a run of consecutive ids (a batch delivered whole): one statement, not one per row.
SQL_DELETE_PENDING_RANGE = f"DELETE FROM {TABLE} WHERE _id BETWEEN ? AND ? AND status = {AckStatus.READY}"
SQL_RELEASE = f"UPDATE {TABLE} SET status = {AckStatus.READY}, attempts = attempts + ?, last_error = ? WHERE _id = ?"
SQL_DEAD_LETTER = (
    f"UPDATE {TABLE} SET status = {AckStatus.ACK_FAILED}, attempts = attempts + 1, last_error = ? WHERE _id = ?"
)
SQL_RESET_CLAIMED = (
    f"UPDATE {TABLE} SET status = {AckStatus.READY} WHERE status IN ({AckStatus.INITED}, {AckStatus.UNACK})"
)
SQL_COUNT_BY_STATUS = f"SELECT status, COUNT(*) FROM {TABLE} GROUP BY status"
# Rows are spooled in _id order, so the first unsettled row is the oldest.
SQL_FIRST_UNSETTLED = f"SELECT _id, timestamp FROM {TABLE} WHERE status IN {_PENDING} ORDER BY _id LIMIT 1"
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
SQL_REQUEUE_DEAD = f"UPDATE {TABLE} SET status = {AckStatus.READY}, attempts = 0 WHERE status = {AckStatus.ACK_FAILED}"
SQL_PURGE_DEAD = f"DELETE FROM {TABLE} WHERE status = {AckStatus.ACK_FAILED}"
SQL_MAX_ID = f"SELECT MAX(_id) FROM {TABLE}"
SQL_EVENTS = f"SELECT data, event_id FROM {TABLE} WHERE status IN {_PENDING} ORDER BY _id"
SQL_EVENTS_AND_DEAD = (
    f"SELECT data, event_id FROM {TABLE} WHERE status IN "
    f"({AckStatus.INITED}, {AckStatus.READY}, {AckStatus.UNACK}, {AckStatus.ACK_FAILED}) ORDER BY _id"
)
SQL_UNSETTLED_THROUGH = f"SELECT COUNT(*) FROM {TABLE} WHERE status IN {_PENDING} AND _id <= ?"
SQL_ANY_ROW = f"SELECT EXISTS (SELECT 1 FROM {TABLE})"

PRAGMA_USER_VERSION = "PRAGMA user_version"
PRAGMA_QUICK_CHECK = "PRAGMA quick_check"
PRAGMA_WAL = "PRAGMA journal_mode = WAL"
PRAGMA_AUTO_VACUUM = "PRAGMA auto_vacuum = INCREMENTAL"  # only takes effect before the first table
PRAGMA_SYNC_NORMAL = "PRAGMA synchronous = NORMAL"
PRAGMA_SYNC_FULL = "PRAGMA synchronous = FULL"
PRAGMA_PAGE_SIZE = "PRAGMA page_size"
PRAGMA_PAGE_COUNT = "PRAGMA page_count"
PRAGMA_FREELIST = "PRAGMA freelist_count"
# executescript steps the pragma to completion; execute() would free a single page.
SCRIPT_VACUUM = "PRAGMA incremental_vacuum;"
PRAGMA_CHECKPOINT = "PRAGMA wal_checkpoint(TRUNCATE)"


def set_user_version(version: int) -> str:
    return f"PRAGMA user_version = {int(version)}"


def tables(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute(SQL_TABLES)}


def has_schema(connection: sqlite3.Connection) -> bool:
    """False for a file whose schema never reached the disk (a power cut right after it was created):
    such a file holds no event, and every reader treats it as empty."""
    return TABLE in tables(connection)


def topic_of(connection: sqlite3.Connection, known_tables: set[str] | None = None) -> str | None:
    """The topic a file records (None: written before files recorded it, or no schema yet)."""
    if META_TABLE not in (tables(connection) if known_tables is None else known_tables):
        return None
    row = connection.execute(SQL_GET_TOPIC).fetchone()
    return None if row is None else str(row[0])


def file_state(connection: sqlite3.Connection) -> tuple[dict[int, int] | None, float | None, str | None]:
    """A file's row counts by status (None: the file has no schema, so no rows), when its oldest
    unsettled row was spooled, and its recorded topic, read together."""
    known = tables(connection)
    if TABLE not in known:
        return None, None, topic_of(connection, known)
    counts = dict(connection.execute(SQL_COUNT_BY_STATUS).fetchall())
    first = connection.execute(SQL_FIRST_UNSETTLED).fetchone()
    return counts, None if first is None else float(first[1]), topic_of(connection, known)


def pending_of(counts: dict[int, int]) -> int:
    """Rows a new owner delivers: ready, and persist-queue's put or got-but-not-acked rows."""
    return sum(counts.get(status, 0) for status in (AckStatus.INITED, AckStatus.READY, AckStatus.UNACK))


def disk_bytes(path: Path) -> int:
    """What a spool file takes on disk: the database, its WAL and its shared-memory index."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(f"{path}{suffix}").st_size
    return total


def fsync_directory(directory: Path) -> None:
    """Make the names in ``directory`` (files and directories created in it) survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- opening a file as its owner -----------------------------------------------------------------


def connect(
    path: Path, *, durability: Durability, busy_timeout: float, topic: str | None
) -> tuple[sqlite3.Connection, str | None]:
    """Open (or create) the spool file at ``path`` for its owner: ``(connection, recorded topic)``.

    A new file (or one whose schema never reached the disk) gets the schema with ``topic``; an
    existing one keeps the topic it records (None: written before files recorded it). Raises
    ``SpoolFileTooNew``, ``SpoolFileCorrupt`` (integrity check) or ``SpoolFileUnavailable``.
    """
    new = not path.exists() or path.stat().st_size == 0
    if new:
        # Create the file ourselves so it is 0600 whatever the umask; SQLite gives its
        # -wal and -shm files the permissions of the database file.
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)
    try:
        connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise open_error(exc) from exc
    try:
        version = connection.execute(PRAGMA_USER_VERSION).fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SpoolFileTooNew(f"written by a newer sentinel-durable (schema {version} > {SCHEMA_VERSION})")
        if not new:
            result = connection.execute(PRAGMA_QUICK_CHECK).fetchone()[0]
            if result != "ok":
                raise SpoolFileCorrupt(f"integrity check failed: {result}")
        if not has_schema(connection):
            # A new file, or one whose schema never reached the disk (a power cut right
            # after it was created leaves SQLite's header and no table): it holds nothing.
            _create_schema(connection, topic)
            version = SCHEMA_VERSION
            if durability == "power":
                fsync_directory(path.parent)  # the file's name survives a power cut too
        else:
            topic = topic_of(connection)  # None: written before files recorded it (schema 1)
        mode = connection.execute(PRAGMA_WAL).fetchone()[0]
        if mode != "wal":
            raise SpoolFileUnavailable(f"cannot use WAL journal mode (got {mode})")
        # process: a commit survives the process being killed (WAL, no fsync per commit).
        # power: inserts are fsynced (see SpoolFile.insert); claims and acks need not be, since
        # losing one only means sending a batch twice.
        connection.execute(PRAGMA_SYNC_NORMAL)
        # A write, so a file another tool holds locked is found busy here (and retried later).
        # The version stays: a schema-1 file becomes 2 only once its topic is recorded.
        connection.execute(set_user_version(version))
    except (SpoolFileCorrupt, SpoolFileUnavailable, SpoolFileTooNew):
        connection.close()
        raise
    except sqlite3.Error as exc:
        connection.close()
        raise open_error(exc) from exc
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", 0o600)
    return connection, topic


def _create_schema(connection: sqlite3.Connection, topic: str | None) -> None:
    """The table, the recorded topic and the schema version in one fsynced transaction, in
    every durability mode (once per file): a file is never used before its schema is on disk.

    Done before switching to WAL: in rollback-journal mode with ``synchronous = FULL`` the
    commit writes and fsyncs the database file itself, where a WAL commit at ``NORMAL``
    would leave only the header (written by the switch) on disk.
    """
    connection.execute(PRAGMA_AUTO_VACUUM)
    connection.execute(PRAGMA_SYNC_FULL)
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(SQL_CREATE)
        connection.execute(SQL_CREATE_META)
        if topic is not None:
            connection.execute(SQL_SET_TOPIC, (topic,))
        connection.execute(set_user_version(SCHEMA_VERSION))
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def open_error(exc: sqlite3.Error) -> Exception:
    """A corrupt file is quarantined; anything else (locked, I/O, disk full) is tried again later."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return SpoolFileCorrupt(str(exc))
    return SpoolFileUnavailable(str(exc))
