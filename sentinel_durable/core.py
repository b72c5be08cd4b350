"""The client core: what ``Client`` and ``AsyncClient`` share, behind their facades.

A core owns one spool and one flusher. It turns ``track`` fields or an event into the record to
spool (checked against the configuration's rules, passed through ``before_send``), spools
records, waits for delivery, flushes, collects stats and closes. Both clients call only the
public methods below; ``AsyncClient`` calls them from its writer and wait threads.

The event-id rule, for every path: the id returned is the id of the event spooled, that is the
one ``before_send`` returned; when ``before_send`` drops the event, the id of the event given.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from . import _fork
from ._timeout import check_timeout, deadline_of, left_until
from .config import Config
from .errors import (
    BrokerConnectionError,
    BrokerUnreachableError,
    ClientClosedError,
    DeliveryTimeoutError,
    SendError,
    SentinelError,
    SpoolFullError,
    ValidationError,
)
from .event import TelemetryEvent, validate_event
from .fields import event_fields
from .flusher import Flusher
from .records import SpoolRecord
from .spool import Spool
from .stats import Counter, Stats
from .transports import check_transport_config, transport_class

__all__ = ["BeforeSend", "ClientCore", "warn_about_compression"]

logger = logging.getLogger("sentinel_durable.client")

BeforeSend = Callable[[TelemetryEvent], TelemetryEvent | None]
#: How long ``close()`` lets the flusher put its batch back when no broker is reachable.
CLOSE_GRACE = 1.0


def warn_about_compression(config: Config) -> None:
    """Log once per client what LLM-Sentinel cannot read: its ingestion's librdkafka is built without zstd."""
    if config.compression == "zstd":
        logger.warning(
            "compression='zstd': LLM-Sentinel cannot decompress these records (its Kafka ingestion links "
            "librdkafka built without zstd, WITH_ZSTD=0); use snappy, lz4 or gzip for a Sentinel deployment"
        )


class ClientCore:
    """One spool and its flusher, with the rules every send follows. Thread-safe."""

    def __init__(
        self,
        config: Config,
        *,
        before_send: BeforeSend | None = None,
        on_delivery: Callable[[list[str]], object] | None = None,
        on_error: Callable[[SendError], object] | None = None,
        adopt_topic: str | None = None,
        capture_errors: Counter | None = None,
    ) -> None:
        self.config = config
        #: What the integrations (instrument, the span exporter) failed to track: in stats().
        self.capture_errors = capture_errors if capture_errors is not None else Counter()
        self._before_send = before_send
        self._hooks = (on_delivery, on_error)
        self._dropped_by_hook = 0
        self._counting = threading.Lock()  # guards _dropped_by_hook (senders of many threads)
        check_transport_config(config)
        transport_class(config)  # imported here, never on the flusher thread (see there)
        self.rules = config.event_rules
        self._lock = threading.Lock()  # guards close() against itself
        self.closed = False
        self._final_stats: Stats | None = None
        self.spool = Spool(
            config.spool_directory(), durability=config.durability, max_spool_bytes=config.max_spool_bytes,
            overflow=config.overflow, max_event_age=config.max_event_age, write_timeout=config.write_timeout,
            batch_timeout=config.batch_timeout, cipher=config.spool_cipher(), topic=config.topic,
            adopt_topic=adopt_topic,
        )  # fmt: skip
        self.spool.on_drop = self._events_dropped
        self._start_flusher()
        self._process = _fork.ProcessBound(self._restart_flusher_in_child)

    def _start_flusher(self) -> None:
        on_delivery, on_error = self._hooks
        self.flusher = Flusher(self.config, self.spool, on_delivery=on_delivery, on_error=on_error)
        self.flusher.start()

    # -- the three sends -------------------------------------------------------------------------

    def track(self, fields: Mapping[str, Any]) -> str:
        self.ensure_usable()
        event_id, record = self.prepare_fields(fields)
        if record is not None:
            self.spool_records([record])
        return event_id

    def send(self, event: TelemetryEvent, *, wait: bool, limit: float | None) -> str:
        self.ensure_usable()
        event_id, record = self.prepare_event(event)
        if record is None:
            return event_id  # dropped by before_send, on purpose: nothing to wait for
        if wait:
            self.send_and_wait(event_id, record, limit)
        else:
            self.spool_records([record])
        return event_id

    def send_batch(self, events: Iterable[TelemetryEvent], *, checked: bool = False) -> list[str]:
        """``checked``: the events were validated against these rules already (the span exporter's)."""
        self.ensure_usable()
        records = self.prepare_batch(events, checked=checked)
        self.spool_records(records)
        return [record.event_id for record in records]

    # -- events to records -----------------------------------------------------------------------

    def prepare_fields(self, fields: Mapping[str, Any]) -> tuple[str, SpoolRecord | None]:
        """``(event id, record to spool)`` of a ``track`` call's fields; the record is None when
        ``before_send`` dropped the event. ``ValidationError`` names a bad field."""
        return self.prepare_event(validate_event(event_fields(self.config, fields), self.rules), checked=True)

    def prepare_event(self, event: TelemetryEvent, *, checked: bool = False) -> tuple[str, SpoolRecord | None]:
        """``(event id, record to spool)`` of an event (checked again against this client's rules)."""
        validated = event if checked else validate_event(event, self.rules)
        kept = self._apply_before_send(validated)
        if kept is None:
            return validated.event_id, None  # dropped by before_send, on purpose
        return kept.event_id, SpoolRecord.from_event(kept, self.rules.max_message_bytes)

    def prepare_batch(self, events: Iterable[TelemetryEvent], *, checked: bool = False) -> list[SpoolRecord]:
        """The records of a batch, or ``ValidationError`` naming the first bad event (``events[i].field``)."""
        records = []
        for index, event in enumerate(events):
            try:
                record = self.prepare_event(event, checked=checked)[1]
            except ValidationError as exc:
                raise ValidationError(
                    f"events[{index}].{exc.field}", exc.message, exc.value, show_value=exc.show_value
                ) from exc
            if record is not None:
                records.append(record)
        return records

    def _apply_before_send(self, event: TelemetryEvent) -> TelemetryEvent | None:
        """Run the user's ``before_send`` hook; what it returns is checked again."""
        if self._before_send is None:
            return event
        result = self._before_send(event)
        if result is None:
            with self._counting:
                self._dropped_by_hook += 1
            return None
        return validate_event(result, self.rules)

    # -- spooling and waiting ----------------------------------------------------------------------

    def ensure_usable(self) -> None:
        """``ClientClosedError`` once closed; in a forked child, start this process's own flusher."""
        if self.closed:
            raise ClientClosedError("the client is closed")
        # First call in a forked child: the parent's flusher thread does not exist here and its
        # producer's sockets are the parent's. The spool opens a file of the child's own on its
        # next use.
        self._process.ensure()

    def _restart_flusher_in_child(self) -> None:
        _fork.keep_inherited(self.flusher)  # never closed here: its sockets are the parent's
        self._start_flusher()

    def spool_records(self, records: Sequence[SpoolRecord]) -> bool:
        """Write to the spool; False when ``overflow="drop_newest"`` dropped them (counted)."""
        accepted = self.spool.put_many(records)  # SpoolClosed is a ClientClosedError
        self.flusher.notify_spooled()
        return accepted

    def send_and_wait(self, event_id: str, record: SpoolRecord, limit: float | None) -> None:
        """Spool ``record`` and wait until Kafka acked it (see ``Client.send``)."""
        waiter = self.flusher.waiters.register(event_id)
        try:
            if not self.spool_records([record]):
                raise SpoolFullError(
                    "the spool is full and overflow='drop_newest' dropped the event",
                    spool_bytes=self.spool.counts().used_bytes, max_spool_bytes=self.config.max_spool_bytes,
                )  # fmt: skip
            self.spool.commit_buffered()
            self.flusher.kick()
            if not waiter.done.wait(timeout=limit):
                assert limit is not None  # a wait without limit only ends with the event settled
                raise self._delivery_timeout(event_id, limit)
        finally:
            self.flusher.waiters.forget(event_id, waiter)
        if waiter.error is not None:
            raise waiter.error

    def _events_dropped(self, reason: str, event_ids: Sequence[str]) -> None:
        """The spool dropped pending events (``drop_oldest``, ``max_event_age``): a ``send(wait=True)``
        waiting for one of them ends now, with the reason, instead of waiting for an ack never coming."""
        config = self.config

        def error(event_id: str) -> SentinelError:
            if reason == "expired":
                return SendError(f"event dropped: older than max_event_age={config.max_event_age:g}s before it"
                                 " was delivered", retries=0, event_id=event_id)  # fmt: skip
            return SpoolFullError(
                f"event {event_id} dropped before it was delivered: the spool was full and overflow='drop_oldest'"
                " made room for newer events", spool_bytes=config.max_spool_bytes,  # full: called as it drops
                max_spool_bytes=config.max_spool_bytes,
            )  # fmt: skip

        self.flusher.waiters.fail(event_ids, error)

    def _delivery_timeout(self, event_id: str, limit: float) -> DeliveryTimeoutError:
        """The error of a wait that ran out: always a DeliveryTimeoutError (what happened to the call),
        with the reason in its message; when no broker is reachable, a BrokerUnreachableError (also a
        BrokerConnectionError) caused by the BrokerConnectionError that says why."""
        last_error = self.flusher.counters.snapshot().last_error
        if self.flusher.blocked:
            refused = f"event {event_id} not acked: Kafka refuses the events ({last_error})"
            return DeliveryTimeoutError(refused, timeout=limit, pending=1)
        if not self.flusher.unreachable:
            return DeliveryTimeoutError(f"event {event_id} not acked", timeout=limit, pending=1)
        cause = BrokerConnectionError(f"no broker reachable: {last_error}", brokers=self.config.brokers)
        error = BrokerUnreachableError(
            f"event {event_id} not acked: no broker reachable ({last_error})",
            timeout=limit, pending=1, brokers=self.config.brokers,
        )  # fmt: skip
        error.__cause__ = cause
        return error

    def flush(self, timeout: float | None, progress: Callable[[int, int], None] | None = None) -> bool:
        """See ``Client.flush``; ``progress(settled, total)`` is called as batches settle."""
        timeout = check_timeout("timeout", timeout)
        self.ensure_usable()
        deadline = deadline_of(timeout)
        # First, whatever the timeout: a flush puts on disk what async mode holds in memory.
        self.spool.commit_buffered()
        if self.spool.orphans_listed() and not self.flusher.adopt_orphans(deadline):
            logger.info("flush timed out after %gs before the spool files left by other processes were adopted",
                        timeout or 0)  # fmt: skip
            return False
        mark = self.spool.flush_mark()
        self.flusher.kick()
        total = self.spool.unsettled_count(mark) if progress is not None else 0
        last_progress = 0.0
        while True:
            done, lost = self.spool.settled(mark)
            if progress is not None and (done or time.monotonic() - last_progress >= 0.5):
                # Counting scans the spool: at most twice a second.
                last_progress = time.monotonic()
                progress(total - (0 if done else self.spool.unsettled_count(mark)), total)
            if done:
                return not lost
            left = deadline - time.monotonic()
            if left <= 0:
                logger.info("flush timed out after %gs with events still pending", timeout or 0)
                return False
            self.flusher.wait_settled(min(left, 0.25))

    # -- stats and closing -------------------------------------------------------------------------

    def stats(self) -> Stats:
        if self.closed:
            final = self._final_stats or self._collect_stats()
            return dataclasses.replace(final, capture_errors=self.capture_errors.value)  # calls after close count
        self.ensure_usable()
        return self._collect_stats()

    def _collect_stats(self) -> Stats:
        # From the first call, the backlog left by dead processes (files for our topic) counts:
        # the spool reads the files it has not adopted yet, read-only and without waiting.
        counts = self.spool.counts(orphans=True)
        counters = self.flusher.counters.snapshot()
        recent = counters.batch_sizes
        # Claimed records are in flight only once a broker connection is known to be live;
        # before that (never connected, or unreachable now) they are still waiting: spooled.
        in_flight = counts.in_flight if counters.broker_connected else 0
        by_hook = self._dropped_by_hook
        return Stats(
            spooled=counts.pending + counts.in_flight - in_flight,
            in_flight=in_flight,
            delivered=counters.delivered,
            dead_lettered=counters.dead_lettered,
            dropped={**counts.dropped, **({"before_send": by_hook} if by_hook else {})},
            retries=counters.retries,
            errors=counters.errors,
            last_error=counters.last_error,
            broker_connected=counters.broker_connected,
            oldest_pending_age_s=counts.oldest_pending_age_s,
            spool_bytes=counts.disk_bytes,
            dead_letters=counts.dead_letters,
            spool_files=counts.files,
            quarantined=counts.quarantined,
            writes=counters.writes,
            messages=counters.delivered,
            bytes=counters.bytes,
            batch_size=sum(recent) / len(recent) if recent else 0.0,
            max_attempts=max(1, self.config.max_retries),
            capture_errors=self.capture_errors.value,
        )

    @property
    def inherited(self) -> bool:
        """True in a forked child that has not used this client yet: nothing of it runs here."""
        return self._process.inherited

    def close(self, timeout: float | None) -> bool:
        """See ``Client.close``; False if it was closed already."""
        timeout = check_timeout("timeout", timeout)
        with self._lock:
            if self.closed:
                return False
            self.closed = True
        deadline = deadline_of(timeout)
        if self._process.inherited:  # first call in a forked child: nothing of ours runs yet
            self.spool.close()
            return True
        try:
            self.spool.commit_buffered()
        except Exception as exc:
            logger.error("could not write buffered events while closing: %s", exc)
        flusher = self.flusher
        # Known unreachable: a short grace for the flusher to put its batch back, not the whole timeout.
        # Known, but perhaps stale (only an ack clears it, and the flusher may be in a backoff while
        # the brokers are back): one probe says whether it still holds.
        unreachable = flusher.recheck_unreachable()
        stopped = flusher.stop(left_until(deadline, CLOSE_GRACE if unreachable else None))
        unreachable = unreachable or flusher.unreachable  # or found so during the close
        if stopped:
            left = 0.0 if unreachable else left_until(deadline)
            flusher.close_transport(5.0 if left is None else left)  # nothing is pending now: quick
        else:
            logger.info("closing while the flusher still waits on a broker call; its batch stays on disk")
        # A send(wait=True) still waiting would wait for an ack that no flusher will ever see.
        flusher.waiters.end(lambda event_id: ClientClosedError(
            f"the client closed before event {event_id} was acked; it stays in the spool and is delivered"
            " by the next client on this spool directory"))  # fmt: skip
        try:
            self._final_stats = self._collect_stats()
        except Exception:
            logger.debug("could not collect the final stats", exc_info=True)
        if unreachable and self._final_stats is not None:
            left_events = self._final_stats.spooled + self._final_stats.in_flight
            logger.info(
                "closed with Kafka unreachable (%s): %d events stay in the spool for the next start",
                ", ".join(self.config.brokers), left_events,
            )  # fmt: skip
        self.spool.close()
        logger.debug("client closed%s", "" if stopped else " (in-flight events return to pending on next start)")
        return True
