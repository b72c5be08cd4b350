"""``Spool``: a spool directory as one queue, composed of the pieces of this package.

``put_many`` writes to this process's active file (``commit.py``) within the bounds
(``bounds.py``); ``claim`` takes from adopted files first, oldest first, then from the active
file; ``ack``/``release``/``dead_letter`` settle a claim in its file (``file.py``). Files left
by dead owners are adopted (``ownership.py``) by the flusher, off the caller's thread, drained,
and removed once empty.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import _fork
from ..crypto import SpoolCipher
from ..errors import ConfigError, SpoolClosed
from ..records import ClaimedRecord, SpoolRecord
from .bounds import Bounds
from .commit import AsyncBuffer, GroupCommit
from .file import Claim, SpoolFile
from .ownership import Ownership
from .schema import Durability, Overflow, fsync_directory

__all__ = ["FlushMark", "Spool", "SpoolCounts"]

logger = logging.getLogger("sentinel_durable.spool")


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


_LIVE_SPOOLS: weakref.WeakSet[Spool] = weakref.WeakSet()


def _longest_write_timeout() -> float:
    return max((spool.write_timeout for spool in list(_LIVE_SPOOLS)), default=10.0)


_fork.limit_sections(_longest_write_timeout)


class Spool:
    """A spool directory as one queue: this process's active file plus files it adopted.

    ``topic`` is recorded in the files this spool creates, and only files recording the same
    topic are adopted (``adopt_topic``, for the command line's ``drain --topic``, adopts the
    files of another topic instead). ``topic=None`` (tools and tests) records nothing and adopts
    every file. In a forked child, the parent's files are abandoned at the fork and the child
    starts a file of its own on first use.
    """

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
        self.write_timeout = write_timeout
        self._batch_timeout = batch_timeout
        self.bounds = Bounds(
            lambda: self._owned.files(), max_spool_bytes=max_spool_bytes, overflow=overflow,
            max_event_age=max_event_age, write_timeout=write_timeout,
        )  # fmt: skip
        self._closed = False
        self._init_process_state()
        # Last: until it is set, the threads of a forked child wait in _ensure_owner.
        self._process = _fork.ProcessBound(self._init_process_state)
        _LIVE_SPOOLS.add(self)

    def _init_process_state(self) -> None:
        """Everything that belongs to one process: files, locks, threads."""
        self._gate = threading.Condition()  # close() waits here for writers in put_many
        self._writers = 0
        self._prepare_directory()
        self._owned = Ownership(
            self.directory, topic=self.topic, adopt_topic=self.adopt_topic, durability=self.durability,
            busy_timeout=self.write_timeout, cipher=self.cipher,
        )  # fmt: skip
        write, written, refuse = self._owned.active.insert, self.bounds.written, self.bounds.refuse
        self._buffer: AsyncBuffer | None = None
        self._group = GroupCommit(write, written, refuse, self.write_timeout)
        if self.durability == "async":
            self._buffer = AsyncBuffer(write, written, refuse, self.write_timeout, self._batch_timeout)

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

    # -- the bounds' figures and hooks ----------------------------------------------------------

    @property
    def dropped(self) -> dict[str, int]:
        return self.bounds.dropped_by_reason()

    @property
    def on_drop(self) -> Callable[[str, Sequence[str]], None] | None:
        return self.bounds.on_drop

    @on_drop.setter
    def on_drop(self, hook: Callable[[str, Sequence[str]], None] | None) -> None:
        self.bounds.on_drop = hook

    @property
    def active_path(self) -> Path:
        return self._owned.active.path

    # -- writing ---------------------------------------------------------------------------------

    def put_many(self, records: Sequence[SpoolRecord]) -> bool:
        """Spool ``records`` in one transaction; on return they are as durable as the mode promises.

        Raises ``SpoolFullError`` when the overflow policy refuses them (or the disk cannot take
        them); then none is spooled. Returns False when ``overflow="drop_newest"`` dropped them
        (counted in ``dropped``). ``SpoolClosed`` once closed.
        """
        self._ensure_owner()
        if not records:
            return True
        with self._gate:  # close() waits for writers that got in, and lets no new one in
            if self._closed:
                raise SpoolClosed("the spool is closed")
            self._writers += 1
        try:
            if not self.bounds.make_room(records):
                return False  # drop_newest: dropped and counted
            if self._buffer is not None:
                self._buffer.add(records)
            else:
                self._group.commit(records)
            return True
        finally:
            with self._gate:
                self._writers -= 1
                if self._closed:  # only close() ever waits here
                    self._gate.notify_all()

    def commit_buffered(self) -> None:
        """In async mode, write what is buffered in memory now (``flush`` and ``close`` call it)."""
        self._ensure_owner()
        if self._buffer is not None:
            self._buffer.commit()

    # -- draining ------------------------------------------------------------------------------

    def adopt_orphans(self) -> int:
        """Lock and adopt every file of our topic whose owner is gone; returns how many.

        Files that fail to open or their integrity check are quarantined."""
        self._ensure_owner()
        adopted = self._owned.adopt_orphans()
        self.bounds.measure_used()
        return adopted

    def orphans_listed(self) -> bool:
        """Whether another file of the directory might be adopted (a listing only: cheap)."""
        self._ensure_owner()
        return self._owned.orphans_listed()

    def claim(self, limit: int) -> Claim | None:
        """Claim up to ``limit`` pending events, oldest file first; None when nothing is pending."""
        self._ensure_open()
        for spool_file in self._owned.files():
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

    def expire(self) -> int:
        """Drop pending events older than ``max_event_age``; returns how many."""
        self._ensure_open()
        return self.bounds.expire()

    def _rows_left(self, spool_file: SpoolFile) -> None:
        """Rows left ``spool_file``: remove it if it is a drained adopted file; shrink, wake blocked writers."""
        if spool_file is not self._owned.active and spool_file.tally() == (0, 0, 0):
            self._owned.release_drained(spool_file)
            self.bounds.rows_left()
        else:
            self.bounds.rows_left(spool_file)

    def flush_mark(self) -> FlushMark:
        """Remember what is in the spool now, so ``settled(mark)`` can tell when it has all gone."""
        self.commit_buffered()
        marks = {f.path: (f.max_row_id(), len(f.dead_lettered)) for f in self._owned.files()}
        return FlushMark(marks, self.bounds.dropped_total())

    def settled(self, mark: FlushMark) -> tuple[bool, bool]:
        """``(every event of the mark delivered or given up, whether any was dead-lettered or dropped)``.

        Cheap: one lookup of the lowest unsettled row id per file.
        """
        self._ensure_owner()
        by_path = {f.path: f for f in self._owned.files()}
        done, lost = True, self.bounds.dropped_total() > mark.dropped
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
        by_path = {f.path: f for f in self._owned.files()}
        return sum(
            by_path[path].unsettled_through(last) for path, (last, _) in mark.last_ids.items() if path in by_path
        )

    # -- inspection ------------------------------------------------------------------------------

    def counts(self, *, orphans: bool = False) -> SpoolCounts:
        """What the files of this spool hold; with ``orphans``, also the files of our topic that
        an adoption pass takes over and has not yet (read, never waited for)."""
        self._ensure_owner()
        files, adopting, unavailable = self._owned.snapshot()  # each file is counted in one place only
        found = self._owned.orphans_to_adopt({f.path for f in files}, adopting, unavailable) if orphans else []
        oldest = [t for t in (f.oldest_spooled_at() for f in files) if t is not None]
        oldest += [o.oldest_spooled_at for o in found if o.oldest_spooled_at is not None]
        tallies = [f.tally() for f in files]
        buffered = len(self._buffer) if self._buffer is not None else 0
        return SpoolCounts(
            pending=sum(t[0] for t in tallies) + buffered + sum(o.pending for o in found),
            in_flight=sum(t[1] for t in tallies),
            dead_letters=sum(t[2] for t in tallies) + sum(o.dead_letters for o in found),
            disk_bytes=sum(f.disk_bytes() for f in files) + sum(o.disk_bytes for o in found),
            used_bytes=self.bounds.used_estimate,
            oldest_pending_age_s=max(0.0, time.time() - min(oldest)) if oldest else None,
            files=len(files) + len(found),
            commits=self.bounds.commits,
            dropped=self.dropped,
            quarantined=list(self._owned.quarantined),
        )

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def _ensure_open(self) -> None:
        if self._closed:
            raise SpoolClosed("the spool is closed")
        self._ensure_owner()

    def _ensure_owner(self) -> None:
        # First use in a forked child: start a file of our own (the parent's were abandoned
        # at the fork). Done here, not in the hook, so a child that never uses the spool
        # creates nothing.
        self._process.ensure()

    def _abandon_after_fork(self) -> None:
        # Runs in the child right after fork(), single-threaded: the parent's files, locks
        # and threads are not ours. Events buffered in memory (async mode) are the parent's.
        owned = getattr(self, "_owned", None)  # None if the fork came while the spool was being made
        if owned is not None:
            for spool_file in [*owned.adopted, owned.active]:
                spool_file.abandon()
        buffer = getattr(self, "_buffer", None)
        if buffer is not None:
            buffer.forget()

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
        buffer = self._buffer
        if buffer is not None:
            buffer.stop(deadline - time.monotonic())
            try:
                buffer.commit()
            except Exception as exc:
                logger.error("could not write %d buffered events while closing: %s", len(buffer), exc)
        for spool_file in self._owned.files():
            keep = spool_file is self._owned.active and buffer is not None and len(buffer) > 0
            if spool_file.close(remove_if_empty=not keep):
                logger.debug("removed empty spool file %s", spool_file.path.name)
        _LIVE_SPOOLS.discard(self)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _abandon_spools_in_child() -> None:
    for spool in list(_LIVE_SPOOLS):
        try:
            spool._abandon_after_fork()
        except Exception:  # one spool's trouble must not leave the others' locks held
            logger.exception("could not release a spool after fork")


_fork.after_fork_in_child(_abandon_spools_in_child)
