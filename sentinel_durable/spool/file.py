"""One spool file owned by this process: every transaction on it.

A claim only reads: the rows handed to the flusher stay ``READY`` on disk and are tracked in
memory (``in_flight``, and the ``cursor`` above them), so a claim costs no write and a crash
leaves them simply pending for the next owner. Acked rows are deleted, dead letters kept with
their last error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import _fork
from ..crypto import SpoolCipher, is_sealed
from ..errors import CannotDecrypt, SpoolClosed
from ..records import ClaimedRecord, SpoolRecord
from . import schema
from .locks import lock_path_for, unlock
from .schema import SCHEMA_VERSION, AckStatus, Durability

__all__ = ["Claim", "SpoolFile"]

logger = logging.getLogger("sentinel_durable.spool")

#: Rough bytes one row costs beyond its JSON, used to size drops and checks before commit.
ROW_OVERHEAD = 120


class SpoolFile:
    """One SQLite spool file, owned by this process. All SQL lives here.

    Thread-safe: every method takes ``self.lock`` around its transaction.
    """

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
        self.lock = _fork.GatedLock()  # its holder runs SQLite: a fork waits for it (see _ForkGate)
        self.closed = False  # set under the lock; every method checks it there
        self.pending = 0
        self.in_flight = 0
        self.dead_letters = 0
        # Every pending row has _id >= cursor: claims scan the table from here, in rowid order,
        # instead of keeping an index on status (which costs a quarter of each insert).
        self.cursor = 0
        self.dead_lettered: list[int] = []  # row ids dead-lettered while we own the file
        self._fsync_inserts = durability == "power"
        with _fork.section():
            self._connection, self.topic = schema.connect(path, durability=durability, busy_timeout=busy_timeout,
                                                          topic=topic)  # fmt: skip

    def record_topic(self, topic: str) -> None:
        """Record ``topic`` as the file's destination (a file written before topics were recorded)."""
        with self.lock:
            if self.closed:
                raise SpoolClosed(f"{self.path.name} is closed")
            with self._transaction() as cursor:
                cursor.execute(schema.SQL_CREATE_META)
                cursor.execute(schema.SQL_SET_TOPIC, (topic,))
                cursor.execute(schema.set_user_version(SCHEMA_VERSION))
            self.topic = topic

    def adopt(self) -> None:
        """Take over a file left by another process: claimed rows go back to pending."""
        with self.lock:
            if self.closed:
                return
            with self._transaction() as cursor:
                cursor.execute(schema.SQL_RESET_CLAIMED)
            self._load_counts()
            self.cursor = 0

    def _load_counts(self) -> None:
        counts = dict(self._connection.execute(schema.SQL_COUNT_BY_STATUS).fetchall())
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
                self._connection.execute(schema.PRAGMA_SYNC_FULL)
            try:
                if len(rows) == 1:  # one statement is its own transaction: no BEGIN/COMMIT round trips
                    first = self._connection.execute(schema.SQL_INSERT, rows[0]).lastrowid or 0
                else:
                    with self._transaction() as cursor:
                        # Without AUTOINCREMENT, a new row takes max(_id) + 1, which can be below
                        # the cursor once the newest rows were acked: the cursor moves back to it.
                        first = (cursor.execute(schema.SQL_MAX_ID).fetchone()[0] or 0) + 1
                        cursor.executemany(schema.SQL_INSERT, rows)
            finally:
                if self._fsync_inserts:
                    self._connection.execute(schema.PRAGMA_SYNC_NORMAL)
            self.pending += len(rows)
            self.cursor = min(self.cursor, first)

    def claim(self, limit: int) -> list[ClaimedRecord]:
        """The next ``limit`` pending rows, in spool order, now in flight. Sealed bodies are opened
        after the lock is released (senders need it); those that cannot be are dead-lettered."""
        with self.lock:
            if self.closed or self.pending <= 0:
                return []
            rows = self._connection.execute(schema.SQL_CLAIM, (self.cursor, limit)).fetchall()
            if not rows and self.cursor:  # cannot happen if the cursor is right; never strand rows
                logger.warning("spool cursor of %s was past pending rows; rescanning", self.path.name)
                self.cursor = 0
                rows = self._connection.execute(schema.SQL_CLAIM, (0, limit)).fetchall()
            self.pending -= len(rows)
            self.in_flight += len(rows)
            if rows:
                self.cursor = max(row[0] for row in rows) + 1
        records = [ClaimedRecord(*row) for row in rows]
        if self._cipher is not None or any(is_sealed(record.data) for record in records):
            records = self._open_sealed(records)
        return records

    def _open_sealed(self, records: list[ClaimedRecord]) -> list[ClaimedRecord]:
        """Decrypt sealed bodies; those that cannot be opened are dead-lettered at once."""
        opened, unreadable, reason = [], [], ""
        for record in records:
            if not is_sealed(record.data):
                opened.append(record)
                continue
            try:
                if self._cipher is None:
                    raise CannotDecrypt("the event is encrypted and no encryption_key is set")
                opened.append(record._replace(data=self._cipher.open(record.data, record.event_id)))
            except CannotDecrypt as exc:
                unreadable.append(record)
                reason = str(exc)
        if unreadable:
            self.dead_letter([record.row_id for record in unreadable], reason)
            logger.error("dead-lettered %d events of %s: %s", len(unreadable), self.path.name, reason)
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
        """Delete delivered (in-flight) rows; consecutive ids (the usual batch) in one range statement."""
        if len(row_ids) > 1 and list(row_ids) == list(range(row_ids[0], row_ids[0] + len(row_ids))):
            changed = self._settle(schema.SQL_DELETE_PENDING_RANGE, [(row_ids[0], row_ids[-1])])
        else:
            changed = self._settle(schema.SQL_DELETE_PENDING, [(row_id,) for row_id in row_ids])
        with self.lock:
            self.in_flight -= changed

    def release(self, row_ids: Sequence[int], error: str | None, count_attempt: bool) -> None:
        increment = 1 if count_attempt else 0
        changed = self._settle(schema.SQL_RELEASE, [(increment, error, row_id) for row_id in row_ids])
        with self.lock:
            self.in_flight -= changed
            self.pending += changed
            if row_ids:
                self.cursor = min(self.cursor, min(row_ids))

    def dead_letter(self, row_ids: Sequence[int], error: str) -> None:
        changed = self._settle(schema.SQL_DEAD_LETTER, [(error, row_id) for row_id in row_ids])
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
                page = cursor.execute(schema.SQL_OLDEST_PENDING_PAGE, (self.cursor, 10_000)).fetchall()
                for row_id, spooled_at, size, event_id in page:
                    if older_than is not None and spooled_at >= older_than:
                        break  # spool order is time order: the rest are younger
                    doomed.append((row_id, event_id))
                    freed += size + ROW_OVERHEAD
                    if older_than is None and freed >= nbytes:
                        break
                removed = 0
                for row_id, event_id in doomed:
                    deleted = cursor.execute(schema.SQL_DELETE_PENDING, (row_id,)).rowcount
                    removed += deleted
                    if deleted and event_ids is not None:
                        event_ids.append(event_id)
            self.pending -= removed
            return removed

    def oldest_spooled_at(self) -> float | None:
        with self.lock:
            if self.closed:
                return None
            row = self._connection.execute(schema.SQL_FIRST_UNSETTLED).fetchone()
        return None if row is None else float(row[1])

    def first_unsettled_id(self) -> int | None:
        """The lowest _id still pending or in flight (None when none is)."""
        with self.lock:
            if self.closed:
                return None
            row = self._connection.execute(schema.SQL_FIRST_UNSETTLED).fetchone()
        return None if row is None else int(row[0])

    def requeue_dead_letters(self) -> int:
        with self.lock:
            with self._transaction() as cursor:
                moved = cursor.execute(schema.SQL_REQUEUE_DEAD).rowcount
            self.dead_letters -= moved
            self.pending += moved
            self.cursor = 0
        return moved

    def move_dead_letters(self, target: SpoolFile) -> int:
        """Requeue the dead letters into ``target`` (a file for another topic): pending there, gone
        from here. Written there first, and fsynced (``target`` is a power-mode file, see ``new_file``:
        a power cut must not keep the delete and lose the insert): a crash in between duplicates them (same event
        ids), never loses them. Bodies are copied as they are (sealed ones stay sealed)."""
        with self.lock:
            rows = self._connection.execute(schema.SQL_DEAD_LETTER_RECORDS).fetchall()
        if not rows:
            return 0
        target.insert([SpoolRecord(bytes(data), *rest) for _, data, *rest in rows])
        removed = self._settle(schema.SQL_DELETE_DEAD, [(row[0],) for row in rows])
        with self.lock:
            self.dead_letters -= removed
        return len(rows)

    def purge_dead_letters(self) -> int:
        with self.lock:
            with self._transaction() as cursor:
                purged = cursor.execute(schema.SQL_PURGE_DEAD).rowcount
            self.dead_letters -= purged
        return purged

    def max_row_id(self) -> int:
        with self.lock:
            if self.closed:
                return 0
            return int(self._connection.execute(schema.SQL_MAX_ID).fetchone()[0] or 0)

    def unsettled_through(self, row_id: int) -> int:
        """Rows up to ``row_id`` still pending or in flight (a scan: for progress displays)."""
        with self.lock:
            if self.closed:
                return 0
            return int(self._connection.execute(schema.SQL_UNSETTLED_THROUGH, (row_id,)).fetchone()[0])

    # -- size ----------------------------------------------------------------------------------

    def _pages(self) -> tuple[int, int, int]:
        """``(page size, pages, free pages)``; call with the lock held."""
        if self.closed:
            return 0, 0, 0
        page_size = self._connection.execute(schema.PRAGMA_PAGE_SIZE).fetchone()[0]
        pages = self._connection.execute(schema.PRAGMA_PAGE_COUNT).fetchone()[0]
        free = self._connection.execute(schema.PRAGMA_FREELIST).fetchone()[0]
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
        return schema.disk_bytes(self.path)

    def shrink(self) -> None:
        """Give free pages back to the filesystem and truncate the WAL."""
        with self.lock:
            if self.closed:
                return
            self._connection.executescript(schema.SCRIPT_VACUUM)
            self._connection.execute(schema.PRAGMA_CHECKPOINT)

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
                    empty = remove_if_empty and not self._connection.execute(schema.SQL_ANY_ROW).fetchone()[0]
                if not empty:
                    with contextlib.suppress(sqlite3.Error):
                        self._connection.execute(schema.PRAGMA_CHECKPOINT)
                self._connection.close()
                if empty:
                    for suffix in ("", "-wal", "-shm"):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(f"{self.path}{suffix}")
                    with contextlib.suppress(FileNotFoundError):
                        lock_path_for(self.path).unlink()  # while still locked: nobody adopts a ghost
            finally:
                unlock(self.lock_fd)
                self.lock_fd = -1
            self.pending = self.in_flight = self.dead_letters = 0
        return empty

    def abandon(self) -> None:
        """In a forked child: never touch the parent's connection or lock again.

        Closing an inherited SQLite connection can disturb the parent's locks, so the
        connection is kept alive (unreachable) for the child's lifetime; the child's copy
        of the lock descriptor is closed without unlocking, which leaves the parent's lock held.
        """
        _fork.keep_inherited(self._connection)
        self.closed = True
        if self.lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.lock_fd)
        self.lock_fd = -1


@dataclass(frozen=True)
class Claim:
    """A batch claimed from one spool file; settle it with ``Spool.ack``/``release``/``dead_letter``."""

    file: SpoolFile
    records: list[ClaimedRecord]

    def __len__(self) -> int:
        return len(self.records)
