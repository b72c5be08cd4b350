"""``Client.stats()``: counters since the client started and gauges now, and the flusher's counters they come from."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field

__all__ = ["Counter", "FlusherCounters", "Stats"]


@dataclass(frozen=True)
class Stats:
    """A snapshot of a client.

    Gauges: ``spooled`` (pending on disk, plus in memory in async mode), ``in_flight``,
    ``oldest_pending_age_s``, ``spool_bytes`` (on disk), ``broker_connected`` (``None``
    before the first attempt; ``False`` as soon as the brokers are known to be unreachable,
    ``True`` from the first ack). Counters since the client started: ``delivered``,
    ``dead_lettered``, ``dropped`` (by reason: ``overflow_oldest``, ``overflow_newest``,
    ``expired``), ``retries``, ``errors`` and ``last_error`` (naming the broker and the reason
    of an outage; cleared when it ends). The Go SDK's writer figures:
    ``writes`` (produce batches acked), ``messages`` (records acked), ``bytes`` (record
    bytes acked), ``batch_size`` (mean records per write, recent writes) and ``max_attempts``.
    ``capture_errors``: LLM calls and GenAI spans that ``client.instrument`` and
    ``SentinelSpanExporter`` could not turn into an event or spool (each kind logged once).
    """

    spooled: int
    in_flight: int
    delivered: int
    dead_lettered: int
    dropped: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    errors: int = 0
    last_error: str | None = None
    broker_connected: bool | None = None
    oldest_pending_age_s: float | None = None
    spool_bytes: int = 0
    dead_letters: int = 0
    spool_files: int = 0
    quarantined: list[str] = field(default_factory=list)
    writes: int = 0
    messages: int = 0
    bytes: int = 0
    batch_size: float = 0.0
    max_attempts: int = 0
    capture_errors: int = 0


class Counter:
    """A count many threads add to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def add(self, count: int = 1) -> None:
        with self._lock:
            self._value += count

    @property
    def value(self) -> int:
        return self._value


@dataclass
class FlusherCounters:
    """What the flusher did since it started. Written under ``lock`` (by the flusher thread, and
    by ``close()`` rechecking the brokers); ``Client.stats()`` reads a ``snapshot()``."""

    delivered: int = 0
    dead_lettered: int = 0
    retries: int = 0
    errors: int = 0
    last_error: str | None = None
    broker_connected: bool | None = None  # None until the first attempt
    writes: int = 0
    bytes: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def snapshot(self) -> FlusherCounters:
        """A copy of the figures, read together."""
        with self.lock:
            return dataclasses.replace(self, batch_sizes=list(self.batch_sizes), lock=threading.RLock())
