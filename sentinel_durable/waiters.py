"""Callers of ``send(..., wait=True)`` waiting for their event's ack.

Keyed by event id, several per id: two sends of one event (the same ``TelemetryEvent`` sent
twice, or an id set by ``before_send``) each wait for an ack of that id, and each is resolved.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from .errors import SendError, SentinelError
from .records import ClaimedRecord

__all__ = ["DeliveryWaiter", "Waiters", "dead_letter_error", "dead_letter_of"]


class DeliveryWaiter:
    """One caller waiting for one event."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: SentinelError | None = None

    def fail(self, error: SentinelError) -> None:
        self.error = error
        self.done.set()


class Waiters:
    """The waiting callers of one client; thread-safe."""

    def __init__(self) -> None:
        self._by_id: dict[str, list[DeliveryWaiter]] = {}
        self._lock = threading.Lock()
        self._ended: Callable[[str], SentinelError] | None = None  # set by end()

    def __bool__(self) -> bool:
        return bool(self._by_id)  # a racy peek, for the flusher's fast path only

    def register(self, event_id: str) -> DeliveryWaiter:
        waiter = DeliveryWaiter()
        with self._lock:
            if self._ended is not None:
                waiter.fail(self._ended(event_id))  # registered after close(): never to be acked here
            else:
                self._by_id.setdefault(event_id, []).append(waiter)
        return waiter

    def forget(self, event_id: str, waiter: DeliveryWaiter) -> None:
        """``waiter`` stopped waiting (resolved, timed out, or its send failed)."""
        with self._lock:
            waiting = self._by_id.get(event_id)
            if waiting is not None and waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del self._by_id[event_id]

    def _take(self, event_id: str) -> list[DeliveryWaiter]:
        return self._by_id.pop(event_id, [])

    def delivered(self, event_ids: Iterable[str]) -> None:
        if not self._by_id:
            return
        with self._lock:
            resolved = [waiter for event_id in event_ids for waiter in self._take(event_id)]
        for waiter in resolved:
            waiter.done.set()

    def fail(self, event_ids: Iterable[str], error: Callable[[str], SentinelError]) -> None:
        """Resolve the waiters of ``event_ids`` (events that will never be acked) with ``error(event_id)``."""
        if not self._by_id:
            return
        with self._lock:
            failed = [(event_id, waiter) for event_id in event_ids for waiter in self._take(event_id)]
        for event_id, waiter in failed:
            waiter.fail(error(event_id))

    def end(self, error: Callable[[str], SentinelError]) -> None:
        """Resolve every waiter, now and registered later, with ``error(event_id)`` (the client closed)."""
        with self._lock:
            self._ended = error
            waiting, self._by_id = self._by_id, {}
        for event_id, waiters in waiting.items():
            for waiter in waiters:
                waiter.fail(error(event_id))


def dead_letter_error(error: str, record: ClaimedRecord, cause: BaseException | None) -> SendError:
    """What a waiting send and ``on_error`` get for a dead letter: the transport's last error, and
    the library's exception behind it as ``__cause__`` when it reported one."""
    dead = SendError(f"event dead-lettered: {error}", retries=record.attempts + 1, event_id=record.event_id)
    dead.__cause__ = cause
    return dead


def dead_letter_of(
    error: str, records: dict[str, ClaimedRecord], cause: BaseException | None, event_id: str
) -> SendError:
    return dead_letter_error(error, records[event_id], cause)
