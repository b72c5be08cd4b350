"""Reading spool files from outside, read-only: what the command line and ``stats()`` backlog use.

WAL lets these readers read beside a live owner's writes; none of them takes the owner lock or
writes to the file. Every SQLite call runs in a fork section (see ``_fork.ForkGate``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .. import _fork
from ..crypto import SpoolCipher, is_sealed
from ..errors import CannotDecrypt, SpoolFileCorrupt
from ..records import repr_sized
from . import schema
from .locks import owner_alive, owner_pid
from .schema import SCHEMA_VERSION, AckStatus

__all__ = ["DeadLetter", "FileReport", "inspect_file", "read_dead_letters", "read_events", "recorded_topic"]


@dataclass(frozen=True)
class FileReport:
    """One spool file seen from outside. Events a live owner has claimed are still pending on
    disk (claims only read), so no in-flight figure can be read from outside."""

    path: Path
    pending: int
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
        return repr_sized(self, self.data, ["event_id", "attempts", "last_error", "spooled_at"])


@contextlib.contextmanager
def _reader(path: Path, busy_timeout: float = 5.0) -> Iterator[sqlite3.Connection]:
    """A connection that only reads, for a short block of queries: the block is one fork
    section, so a generator must not yield inside it (use ``_open_reader``)."""
    with _fork.section(), _open_reader(path, busy_timeout) as connection:
        yield connection


@contextlib.contextmanager
def _open_reader(path: Path, busy_timeout: float = 5.0) -> Iterator[sqlite3.Connection]:
    """A connection that only reads. Opened and closed inside fork sections; the caller puts
    its own queries in sections."""
    try:
        with _fork.section():
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout)
    except sqlite3.Error as exc:
        raise SpoolFileCorrupt(f"{path.name}: cannot open: {exc}") from exc
    try:
        yield connection
    except sqlite3.DatabaseError as exc:
        raise SpoolFileCorrupt(f"{path.name}: {exc}") from exc
    finally:
        with _fork.section():
            connection.close()


def recorded_topic(path: Path) -> str | None:
    """The topic a spool file records for its events (None: none recorded, or no schema yet)."""
    with _reader(path) as connection:
        return schema.topic_of(connection)


def inspect_file(path: Path) -> FileReport:
    with _reader(path) as connection:
        state, oldest, topic = schema.file_state(connection)
    counts = state or {}
    return FileReport(
        path=path,
        pending=schema.pending_of(counts),
        dead_letters=counts.get(AckStatus.ACK_FAILED, 0),
        disk_bytes=schema.disk_bytes(path),
        oldest_pending_age_s=max(0.0, time.time() - oldest) if oldest is not None else None,
        owner_alive=owner_alive(path),
        owner_pid=owner_pid(path),
        topic=topic,
    )


class Backlog(NamedTuple):
    """What an orphan holds, read without owning it."""

    topic: str | None
    pending: int  # pending once adopted
    dead_letters: int
    oldest_spooled_at: float | None
    disk_bytes: int


#: How long a read-only count of an orphan waits for a lock: long enough for our own adoption
#: pass's short writes (a WAL reader is refused while the file is opened or its claims reset),
#: far below a busy_timeout, so a file another tool holds locked never stalls stats().
BACKLOG_READ_WAIT = 0.25


def read_backlog(path: Path) -> Backlog | None:
    """An orphan's counts, read-only, waiting at most ``BACKLOG_READ_WAIT``; None when they cannot be read now."""
    try:
        size = schema.disk_bytes(path)
        with _reader(path, busy_timeout=BACKLOG_READ_WAIT) as connection:
            if connection.execute(schema.PRAGMA_USER_VERSION).fetchone()[0] > SCHEMA_VERSION:
                return None  # left alone by adoption
            counts, oldest, topic = schema.file_state(connection)
            if counts is None:
                return None
    except (SpoolFileCorrupt, sqlite3.Error, OSError):
        return None
    return Backlog(
        topic=topic,
        pending=schema.pending_of(counts),
        dead_letters=counts.get(AckStatus.ACK_FAILED, 0),
        oldest_spooled_at=oldest,
        disk_bytes=size,
    )


def read_events(
    path: Path, *, include_dead_letters: bool = False, cipher: SpoolCipher | None = None
) -> Iterator[bytes]:
    """The wire JSON of every event in the file (pending; dead letters if asked), in spool order.

    Encrypted bodies are opened with ``cipher``; without it they raise ``CannotDecrypt``.
    """
    query = schema.SQL_EVENTS_AND_DEAD if include_dead_letters else schema.SQL_EVENTS
    with _open_reader(path) as connection:
        with _fork.section():  # the reads are in sections; the yields (to the caller) are not
            if not schema.has_schema(connection):
                return
            cursor = connection.execute(query)
        while True:
            with _fork.section():
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
        rows = connection.execute(schema.SQL_DEAD_LETTERS).fetchall() if schema.has_schema(connection) else []
    return [
        DeadLetter(event_id, attempts, error or "", spooled_at, bytes(data))
        for _, data, event_id, attempts, error, spooled_at in rows
    ]
