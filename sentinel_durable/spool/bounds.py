"""The spool's bounds: its size (``max_spool_bytes`` and the overflow policy), event age
(``max_event_age``), and giving drained pages back to the filesystem.

The size is an estimate kept from each commit's bytes and measured (from the files' page counts)
every 256 commits, and whenever the estimate comes near the bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from ..errors import SpoolFullError
from ..records import SpoolRecord
from .file import ROW_OVERHEAD, SpoolFile
from .schema import Overflow

__all__ = ["Bounds"]

logger = logging.getLogger("sentinel_durable.spool")

#: Free pages are given back to the filesystem once the spool is drained (and they add up to
#: SHRINK_DRAINED_AT), or while it drains once they are most of a large file: vacuuming during
#: a drain moves live pages and costs more than it saves (free pages are reused by new events).
SHRINK_AT = 64 << 20
SHRINK_DRAINED_AT = 1 << 20
#: Bytes kept free below max_spool_bytes for the pages a commit may add beyond its rows' size.
GROWTH_SLACK = 4 * 4096
#: Commits between two measurements of the size.
MEASURE_EVERY = 256


class Bounds:
    """Keeps the spool within its size and age bounds; counts what it drops."""

    def __init__(
        self,
        files: Callable[[], list[SpoolFile]],
        *,
        max_spool_bytes: int,
        overflow: Overflow,
        max_event_age: float | None,
        write_timeout: float,
    ) -> None:
        self._files = files
        self.max_spool_bytes = max_spool_bytes
        self.overflow = overflow
        self.max_event_age = max_event_age
        self._write_timeout = write_timeout
        self.dropped: Counter[str] = Counter()
        #: ``on_drop(reason, event_ids)``: told of the pending events dropped by ``drop_oldest`` or
        #: ``max_event_age`` (the client resolves a ``send(wait=True)`` waiting for one of them).
        self.on_drop: Callable[[str, Sequence[str]], None] | None = None
        self._counting = threading.Lock()  # guards the counters below (written by senders and the flusher)
        self.used_estimate = 0
        self.commits = 0  # transactions that wrote events (fewer than puts under group commit)
        self._commits_since_measure = 0
        self._space = threading.Condition()  # notified when rows leave the spool
        self._freed = 0  # times rows left (under _space): a waiter measures, then waits only if unchanged

    def refuse(self, message: str) -> SpoolFullError:
        return SpoolFullError(message, spool_bytes=self.used_estimate, max_spool_bytes=self.max_spool_bytes)

    # -- size --------------------------------------------------------------------------------

    def written(self, records: Sequence[SpoolRecord]) -> None:
        """A commit wrote ``records``."""
        size = sum(len(r.data) + ROW_OVERHEAD for r in records)
        with self._counting:
            self.commits += 1
            self.used_estimate += size
            self._commits_since_measure += 1
            due = self._commits_since_measure >= MEASURE_EVERY
        if due:
            self.measure_used()

    def measure_used(self) -> int:
        used = sum(f.used_bytes() for f in self._files())
        with self._counting:
            self.used_estimate = used
            self._commits_since_measure = 0
        return used

    def make_room(self, records: Sequence[SpoolRecord]) -> bool:
        """Apply the overflow policy; False when the records are to be dropped."""
        # Pages grow a few at a time, so keep room for that beyond the rows.
        incoming = sum(len(r.data) + ROW_OVERHEAD for r in records) + GROWTH_SLACK
        if self.used_estimate + incoming <= self.max_spool_bytes * 0.9:
            return True
        if self.measure_used() + incoming <= self.max_spool_bytes:
            return True
        if incoming > self.max_spool_bytes:
            raise self.refuse(f"{len(records)} events of {incoming} bytes can never fit")
        if self.overflow == "drop_newest":
            self._count_drop("overflow_newest", len(records))
            return False
        if self.overflow == "drop_oldest":
            self._drop_oldest(incoming)
            return True
        if self.overflow == "block" and self._wait_for_room(incoming):
            return True
        raise self.refuse(f"spool is at max_spool_bytes (overflow={self.overflow})")

    def _wait_for_room(self, incoming: int) -> bool:
        """Block until ``incoming`` bytes fit, at most ``write_timeout``. The files are measured
        outside ``_space``, which the flusher takes to wake us."""
        deadline = time.monotonic() + self._write_timeout
        while True:
            with self._space:
                freed = self._freed
            if self.measure_used() + incoming <= self.max_spool_bytes:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._space:
                if self._freed == freed:
                    self._space.wait(min(remaining, 0.5))

    def _drop_oldest(self, incoming: int) -> None:
        dropped = 0
        event_ids: list[str] = []
        while self.measure_used() + incoming > self.max_spool_bytes:
            need = self.used_estimate + incoming - self.max_spool_bytes
            removed = next((n for f in self._files() if (n := f.drop_oldest_pending(need, event_ids=event_ids))), 0)
            if removed == 0:
                raise self.refuse("spool is full of events in flight or dead-lettered; nothing pending to drop")
            dropped += removed
        self._count_drop("overflow_oldest", dropped, event_ids)

    # -- age ---------------------------------------------------------------------------------

    def expire(self) -> int:
        """Drop pending events older than ``max_event_age``; returns how many."""
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
            self.rows_left()
        return total

    def _count_drop(self, reason: str, count: int, event_ids: Sequence[str] = ()) -> None:
        if count:
            with self._counting:
                self.dropped[reason] += count
            logger.warning("dropped %d events from the spool (%s)", count, reason)
        if event_ids and self.on_drop is not None:
            self.on_drop(reason, event_ids)

    def dropped_total(self) -> int:
        with self._counting:
            return sum(self.dropped.values())

    def dropped_by_reason(self) -> dict[str, int]:
        with self._counting:
            return dict(self.dropped)

    # -- rows leaving ------------------------------------------------------------------------

    def rows_left(self, spool_file: SpoolFile | None = None) -> None:
        """Rows left ``spool_file`` (still held): shrink it if worth it; remeasure and wake blocked writers."""
        if spool_file is not None:
            pending, in_flight, _ = spool_file.tally()
            page_size, pages, free_pages = spool_file.page_usage()
            free = page_size * free_pages
            drained = pending == 0 and in_flight == 0
            if (drained and free >= SHRINK_DRAINED_AT) or (free >= SHRINK_AT and free_pages > 0.75 * pages):
                spool_file.shrink()  # give the free pages back to the filesystem
        self.measure_used()
        with self._space:
            self._freed += 1
            self._space.notify_all()
