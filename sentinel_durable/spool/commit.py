"""Getting events onto disk: group commit (``process`` and ``power`` modes) and the async buffer.

**Group commit.** Concurrent callers share one transaction (in ``power`` mode one fsync): the
first caller to find no leader writes every waiting caller's records and wakes them; the others
wait for their ticket, at most ``write_timeout``.

**The async buffer** (``async`` mode). ``send`` appends to a buffer in memory and returns; a
writer thread commits it once it holds ``LIMIT`` events or its oldest is ``interval`` old.
Senders wait while the buffer is that full or that old, so a crash loses at most this buffer
plus the one being committed; a sender that waited ``write_timeout`` gets ``SpoolFullError``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence

from ..errors import SpoolFullError
from ..records import SpoolRecord

__all__ = ["AsyncBuffer", "GroupCommit", "write_error"]

logger = logging.getLogger("sentinel_durable.spool")

#: ``refuse(message)``: the ``SpoolFullError`` to raise, with the spool's size figures.
Refuse = Callable[[str], SpoolFullError]
#: ``write(records)``: insert the records into the active file in one transaction.
Write = Callable[[Sequence[SpoolRecord]], None]
#: ``written(records)``: told of the records of each commit (for the size estimate and stats).
Written = Callable[[Sequence[SpoolRecord]], None]


def write_error(error: sqlite3.Error, refuse: Refuse) -> SpoolFullError:
    """What a failed SQLite write means to the sender: the spool cannot take the event now."""
    text = str(error)
    if isinstance(error, sqlite3.OperationalError) and "full" in text.lower():
        reason = f"the disk holding the spool is full ({text})"
    elif isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        reason = f"another connection held the spool file's write lock past write_timeout ({text})"
    else:
        reason = f"the spool file could not be written ({type(error).__name__}: {text})"
    refused = refuse(f"the spool cannot take the event now: {reason}; the event was not spooled")
    refused.__cause__ = error
    return refused


class _Ticket:
    """One caller's records waiting for a group commit."""

    __slots__ = ("done", "error", "records")

    def __init__(self, records: Sequence[SpoolRecord]) -> None:
        self.records = records
        self.done = False
        self.error: BaseException | None = None


class GroupCommit:
    """Leader/follower group commit of concurrent callers' records into one transaction."""

    def __init__(self, write: Write, written: Written, refuse: Refuse, write_timeout: float) -> None:
        self._write, self._written, self._refuse = write, written, refuse
        self._write_timeout = write_timeout
        self._commit = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._leader = False

    def commit(self, records: Sequence[SpoolRecord]) -> None:
        """Write ``records``; on return they are as durable as the mode promises.

        A follower whose leader finished before reaching its ticket becomes the next leader."""
        ticket = _Ticket(records)
        timeout = self._write_timeout
        with self._commit:
            self._waiting.append(ticket)
            deadline = time.monotonic() + timeout if self._leader else 0.0
            while self._leader and not ticket.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0 and (ticket in self._waiting or remaining < -timeout):
                    # Withdraw if still queued, so nothing is written after we report the failure;
                    # a leader that took our ticket gets one more write_timeout to finish.
                    if ticket in self._waiting:
                        self._waiting.remove(ticket)
                    raise self._refuse(
                        f"the spool cannot take the event now: a write waited write_timeout ({timeout:g}s)"
                        " for the one before it to reach the disk; the event was not spooled"
                    )
                self._commit.wait(remaining if remaining > 0 else 0.05)
            if ticket.done:
                if ticket.error is not None:
                    raise ticket.error
                return
            self._leader = True
            group, self._waiting = self._waiting, []
        batch = group[0].records if len(group) == 1 else [record for member in group for record in member.records]
        error: BaseException | None = None
        try:
            self._write(batch)
        except sqlite3.Error as exc:  # every member of the group gets the same, clear failure
            error = write_error(exc, self._refuse)
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
        self._written(batch)


class AsyncBuffer:
    """The async mode's buffer in memory, and the writer thread that commits it."""

    #: The buffer is committed once it holds this many events, and senders wait while it is that
    #: full: what a crash can lose is this buffer plus the one being committed.
    LIMIT = 1000
    #: With batch_timeout=0, the buffer is committed at least this often.
    DEFAULT_INTERVAL = 0.05
    #: A lasting write failure is retried this often at most (backing off from ``interval``).
    MAX_RETRY_INTERVAL = 1.0

    def __init__(self, write: Write, written: Written, refuse: Refuse, write_timeout: float, interval: float) -> None:
        self._write, self._written, self._refuse = write, written, refuse
        self._write_timeout = write_timeout
        self.interval = interval or self.DEFAULT_INTERVAL
        self._commit = threading.Condition()
        self._buffer: list[SpoolRecord] = []
        self._since = 0.0  # time.monotonic() when the oldest buffered event came in
        self._writing = threading.Lock()  # held from taking the buffer until it is on disk
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sentinel-durable-spool-writer", daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self._buffer)

    def add(self, records: Sequence[SpoolRecord]) -> None:
        """Buffer ``records``, first waiting while the writer is behind.

        The wait is what bounds a crash's loss: a sender never gets ahead of the writer by a
        full buffer or by a buffer older than the interval. Without it, senders that hold the
        GIL starve the writer and the buffer grows without bound.
        """
        with self._commit:
            deadline: float | None = None
            while self._buffer and (
                len(self._buffer) >= self.LIMIT or time.monotonic() - self._since >= self.interval
            ):
                now = time.monotonic()
                deadline = now + self._write_timeout if deadline is None else deadline
                if now >= deadline:
                    raise self._refuse(
                        f"the spool cannot take the event now: the async writer is behind ({len(self._buffer)}"
                        f" events buffered, not yet on disk) and did not catch up within write_timeout"
                        f" ({self._write_timeout:g}s); the event was not spooled"
                    )
                self._commit.notify_all()  # the writer may be in its timed wait
                self._commit.wait(deadline - now)
            if not self._buffer:
                self._since = time.monotonic()
            self._buffer.extend(records)
            if len(self._buffer) >= self.LIMIT:
                self._commit.notify_all()

    def commit(self) -> None:
        """Write what is buffered now (``flush`` and ``close`` call it); ``SpoolFullError`` if it cannot be."""
        # Held until the records are on disk, so a flush mark taken after this returns (by
        # any thread) sees every event that was buffered before it was called.
        with self._writing:
            with self._commit:
                records, self._buffer = self._buffer, []
                self._commit.notify_all()  # senders held back by a full or old buffer
            if not records:
                return
            try:
                self._write(records)
            except sqlite3.Error as exc:
                with self._commit:  # keep them for the next attempt rather than lose them
                    self._buffer[:0] = records
                    self._since = time.monotonic() - self.interval  # overdue: senders wait
                raise write_error(exc, self._refuse) from exc
        self._written(records)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            with self._commit:
                # Commit once the buffer is full or its oldest event is interval old;
                # senders that find it so notify us (see add).
                while not self._stop.is_set() and len(self._buffer) < self.LIMIT:
                    due = self._since + self.interval - time.monotonic()
                    if self._buffer and due <= 0:
                        break
                    self._commit.wait(due if self._buffer else self.interval)
            try:
                self.commit()
            except Exception as exc:
                failures += 1
                if failures == 1:
                    logger.error("async spool write failed; the events stay buffered and are retried: %s", exc,
                                 exc_info=exc)  # fmt: skip
                else:
                    logger.debug("async spool write failed again (%d in a row): %s", failures, exc)
                self._stop.wait(min(self.MAX_RETRY_INTERVAL, self.interval * 2 ** min(failures, 10)))
                continue
            if failures:
                logger.info("async spool writes succeed again after %d failures", failures)
                failures = 0

    def stop(self, timeout: float) -> None:
        """Stop the writer thread (``commit`` still works: ``close`` writes the rest itself)."""
        self._stop.set()
        with self._commit:
            self._commit.notify_all()
        self._thread.join(timeout=max(0.0, timeout))

    def forget(self) -> None:
        """In a forked child: the buffered events are the parent's (its writer thread is not ours)."""
        self._buffer = []
