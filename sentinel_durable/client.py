"""The client: what the caller's threads touch.

``send`` validates, serialises and writes to the spool, then returns; it never waits for
Kafka (unless asked with ``wait=True``) and never touches the network. The flusher thread
(``flusher.py``) does the rest.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from ._timeout import WRITE_TIMEOUT, WriteTimeout, check_timeout, deadline_of, left_until, send_timeout
from .config import Config
from .crypto import SpoolCipher, parse_key
from .errors import (
    BrokerConnectionError,
    BrokerUnreachableError,
    ClientClosedError,
    ConfigError,
    DeliveryTimeoutError,
    SendError,
    SentinelError,
    SpoolFullError,
    ValidationError,
)
from .event import TelemetryEvent, validate_event
from .flusher import Flusher
from .observe import Observation
from .otel import resolve_span_ids
from .spool import Spool, SpoolClosed, SpoolRecord
from .stats import Stats
from .transport import check_transport_config, transport_class

__all__ = ["Client"]

logger = logging.getLogger(__name__)

#: Open clients, held strongly: a client dropped without close() keeps delivering from its
#: flusher thread, and the exit hook still gives it its shutdown_timeout.
_LIVE_CLIENTS: set[Client] = set()
#: How long ``close()`` lets the flusher put its batch back when no broker is reachable.
CLOSE_GRACE = 1.0
#: Flushers inherited across fork(): never closed in the child (their producer's sockets are
#: the parent's), so they are kept referenced here for the child's lifetime.
_ABANDONED: list[Flusher] = []


def warn_about_compression(config: Config) -> None:
    """Log once per client what LLM-Sentinel cannot read: its ingestion's librdkafka is built without zstd."""
    if config.compression == "zstd":
        logger.warning(
            "compression='zstd': LLM-Sentinel cannot decompress these records (its Kafka ingestion links "
            "librdkafka built without zstd, WITH_ZSTD=0); use snappy, lz4 or gzip for a Sentinel deployment"
        )


class Client:
    """Sends LLM telemetry to LLM-Sentinel through an on-disk spool and a background flusher.

    ``Client(brokers=[...], topic=...)`` takes every option of :class:`Config`, or
    ``Client(config=Config(...))``. Creating a client never touches the network.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        before_send: Callable[[TelemetryEvent], TelemetryEvent | None] | None = None,
        on_delivery: Callable[[list[str]], object] | None = None,
        on_error: Callable[[SendError], object] | None = None,
        _warned: bool = False,  # AsyncClient warned already, at its construction
        _adopt_topic: str | None = None,
        **options: Any,
    ) -> None:
        """``before_send(event)`` runs on the caller's thread before an event is spooled and may
        return it changed (it is checked again) or ``None`` to drop it (counted in
        ``stats().dropped["before_send"]``). ``on_delivery(event_ids)`` and ``on_error(SendError)``
        run on the flusher thread after each batch is acked and for each dead letter; keep them
        quick. An exception in them is logged and counted, and does not stop delivery.

        ``_adopt_topic`` (private, for ``sentinel-durable drain --topic``): adopt the spool files
        recorded for that topic instead of this client's own, and deliver them to ``topic``."""
        if config is not None and options:
            raise ConfigError("config", f"pass config= or options ({', '.join(sorted(options))}), not both")
        self._config = config if config is not None else Config(**options)
        self._before_send = before_send
        self._on_delivery = on_delivery
        self._on_error = on_error
        self._dropped_by_hook = 0
        check_transport_config(self._config)
        if not _warned:
            warn_about_compression(self._config)
        transport_class(self._config)  # imported here, never on the flusher thread (see there)
        self._rules = self._config.event_rules
        self._lock = threading.Lock()  # guards close() against itself
        self._closed = False
        self._final_stats: Stats | None = None
        self._spool = Spool(
            self._config.spool_directory(),
            durability=self._config.durability,
            max_spool_bytes=self._config.max_spool_bytes,
            overflow=self._config.overflow,
            max_event_age=self._config.max_event_age,
            write_timeout=self._config.write_timeout,
            batch_timeout=self._config.batch_timeout,
            cipher=cipher_for(self._config),
            topic=self._config.topic,
            adopt_topic=_adopt_topic,
        )
        self._spool.on_drop = self._events_dropped
        self._start_flusher()
        _LIVE_CLIENTS.add(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Client:
        """A client configured from ``SENTINEL_*`` variables (see ``Config.from_env``)."""
        return cls(config=Config.from_env(environ, **overrides))

    @property
    def config(self) -> Config:
        return self._config

    def _start_flusher(self) -> None:
        self._flusher = Flusher(self._config, self._spool, on_delivery=self._on_delivery, on_error=self._on_error)
        self._flusher.start()
        _close_at_worker_exit()
        self._pid = os.getpid()  # last: other threads of a forked child wait until the flusher is new

    # -- sending ---------------------------------------------------------------------------------

    def track(
        self,
        *,
        service: str,
        model: str,
        prompt: str,
        response: str,
        latency_ms: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost_usd: float = 0.0,
        finish_reason: str = "stop",
        trace_id: str | None = None,
        span_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        errors: Sequence[str] | None = None,
        prompt_embedding: Sequence[float] | None = None,
        response_embedding: Sequence[float] | None = None,
    ) -> str:
        """Record one LLM call (the Go SDK's ``Track``); returns the event id once spooled."""
        self._check_usable()
        fields = track_fields(
            self._config, service=service, model=model, prompt=prompt, response=response, latency_ms=latency_ms,
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost_usd,
            finish_reason=finish_reason, trace_id=trace_id, span_id=span_id, metadata=metadata, errors=errors,
            prompt_embedding=prompt_embedding, response_embedding=response_embedding,
        )  # fmt: skip
        event = validate_event(fields, self._rules)
        kept = self._apply_before_send(event)
        if kept is not None:
            self._spool_records([SpoolRecord.from_event(kept, self._rules.max_message_bytes)])
        return event.event_id

    def observe(self, *, service: str, model: str, prompt: str | None = None, **fields: Any) -> Observation:
        """An :class:`~sentinel_durable.observe.Observation` of one LLM call, tracked through this client.

        A context manager (``with``, or ``async with``) and a decorator (plain and ``async def``
        functions) that measures the latency, records an exception as an error, and tracks one
        event on exit. ``fields`` are further ``track`` keywords (``prompt_tokens``, ``metadata``...).
        """
        return Observation(self, service=service, model=model, prompt=prompt, **fields)

    def send(
        self, event: TelemetryEvent, *, wait: bool = False, timeout: float | WriteTimeout | None = WRITE_TIMEOUT
    ) -> str:
        """Spool ``event`` (checked again against this client's rules); returns its id.

        With ``wait=True`` return only once Kafka acked it (the Go SDK's synchronous
        ``Send``): ``DeliveryTimeoutError`` after ``timeout`` seconds (default ``write_timeout``;
        ``None`` waits without limit). Its message says why when it is known: the deployment refuses
        the events (an ACL, a missing topic, a refused login), or no broker is reachable — then it is a
        ``BrokerUnreachableError`` (also a ``BrokerConnectionError``) and its ``__cause__`` a
        ``BrokerConnectionError`` naming the brokers and the reason. ``SendError``
        if it was dead-lettered or dropped for its age (``max_event_age``), ``SpoolFullError`` if
        ``overflow="drop_oldest"`` dropped it, ``ClientClosedError`` if the client is closed while
        it waits. The event stays spooled on a timeout and on a close.
        """
        limit = send_timeout(timeout, self._config.write_timeout)
        self._check_usable()
        validated = validate_event(event, self._rules)
        checked = self._apply_before_send(validated)
        if checked is None:
            return validated.event_id  # dropped by before_send, on purpose: nothing to wait for
        record = SpoolRecord.from_event(checked, self._rules.max_message_bytes)
        if not wait:
            self._spool_records([record])
            return checked.event_id
        waiter = self._flusher.register_waiter(checked.event_id)
        try:
            if not self._spool_records([record]):
                raise SpoolFullError(
                    "the spool is full and overflow='drop_newest' dropped the event",
                    spool_bytes=self._spool.counts().used_bytes,
                    max_spool_bytes=self._config.max_spool_bytes,
                )
            self._spool.commit_buffered()
            self._flusher.kick()
            if not waiter.done.wait(timeout=limit):
                assert limit is not None  # a wait without limit only ends with the event settled
                raise self._delivery_timeout(checked.event_id, limit)
        finally:
            self._flusher.forget_waiter(checked.event_id)
        if waiter.error is not None:
            raise waiter.error
        return checked.event_id

    def _events_dropped(self, reason: str, event_ids: Sequence[str]) -> None:
        """The spool dropped pending events (``drop_oldest``, ``max_event_age``): a ``send(wait=True)``
        waiting for one of them ends now, with the reason, instead of waiting for an ack never coming."""
        config = self._config

        def error(event_id: str) -> SentinelError:
            if reason == "expired":
                return SendError(f"event dropped: older than max_event_age={config.max_event_age:g}s before it"
                                 " was delivered", retries=0, event_id=event_id)  # fmt: skip
            return SpoolFullError(
                f"event {event_id} dropped before it was delivered: the spool was full and overflow='drop_oldest'"
                " made room for newer events", spool_bytes=config.max_spool_bytes,  # full: called as it drops
                max_spool_bytes=config.max_spool_bytes,
            )  # fmt: skip

        self._flusher.fail_waiters(event_ids, error)

    def _delivery_timeout(self, event_id: str, limit: float) -> DeliveryTimeoutError:
        """The error of a wait that ran out: always a DeliveryTimeoutError (what happened to the call),
        with the reason in its message; when no broker is reachable, a BrokerUnreachableError (also a
        BrokerConnectionError) caused by the BrokerConnectionError that says why."""
        counters = self._flusher.counters
        if self._flusher.blocked:
            refused = f"event {event_id} not acked: Kafka refuses the events ({counters.last_error})"
            return DeliveryTimeoutError(refused, timeout=limit, pending=1)
        if not self._flusher.unreachable:
            return DeliveryTimeoutError(f"event {event_id} not acked", timeout=limit, pending=1)
        cause = BrokerConnectionError(f"no broker reachable: {counters.last_error}", brokers=self._config.brokers)
        error = BrokerUnreachableError(
            f"event {event_id} not acked: no broker reachable ({counters.last_error})",
            timeout=limit, pending=1, brokers=self._config.brokers,
        )  # fmt: skip
        error.__cause__ = cause
        return error

    def send_batch(self, events: Iterable[TelemetryEvent]) -> list[str]:
        """Spool every event in one transaction, or none: one invalid event refuses the batch."""
        self._check_usable()
        records = []
        for index, event in enumerate(events):
            try:
                kept = self._apply_before_send(validate_event(event, self._rules))
                if kept is not None:
                    records.append(SpoolRecord.from_event(kept, self._rules.max_message_bytes))
            except ValidationError as exc:
                raise ValidationError(
                    f"events[{index}].{exc.field}", exc.message, exc.value, show_value=exc.show_value
                ) from exc
        self._spool_records(records)
        return [record.event_id for record in records]

    def _apply_before_send(self, event: TelemetryEvent) -> TelemetryEvent | None:
        """Run the user's ``before_send`` hook; what it returns is checked again."""
        if self._before_send is None:
            return event
        result = self._before_send(event)
        if result is None:
            self._dropped_by_hook += 1
            return None
        return validate_event(result, self._rules)

    def _spool_records(self, records: Sequence[SpoolRecord]) -> bool:
        """Write to the spool; False when ``overflow="drop_newest"`` dropped them (counted)."""
        try:
            accepted = self._spool.put_many(records)
        except SpoolClosed:
            raise ClientClosedError("the client is closed") from None
        self._flusher.notify_spooled()
        return accepted

    # -- waiting -------------------------------------------------------------------------------

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every event pending for this client's topic when called is delivered.

        That is this client's spool file and the files of the spool directory it adopts: those
        left by dead processes or closed clients that record this topic (or no topic). Files
        recorded for another topic are never adopted or waited for. Returns True when all were
        acked by Kafka; False on timeout (``None``: no limit), or once one of them is
        dead-lettered or dropped.
        """
        return self._flush(timeout)

    def _flush(self, timeout: float | None, progress: Callable[[int, int], None] | None = None) -> bool:
        """``flush``, calling ``progress(settled, total)`` as batches settle (the CLI's progress bar)."""
        timeout = check_timeout("timeout", timeout)
        self._check_usable()
        deadline = deadline_of(timeout)
        self._spool.adopt_orphans()
        mark = self._spool.flush_mark()
        self._flusher.kick()
        total = self._spool.unsettled_count(mark) if progress is not None else 0
        last_progress = 0.0
        while True:
            done, lost = self._spool.settled(mark)
            if progress is not None and (done or time.monotonic() - last_progress >= 0.5):
                # Counting scans the spool: at most twice a second.
                last_progress = time.monotonic()
                progress(total - (0 if done else self._spool.unsettled_count(mark)), total)
            if done:
                return not lost
            left = deadline - time.monotonic()
            if left <= 0:
                logger.info("flush timed out after %gs with events still pending", timeout or 0)
                return False
            self._flusher.wait_settled(min(left, 0.25))

    def stats(self) -> Stats:
        """Counters since the client started and gauges now; after ``close()``, as it closed."""
        if self._closed:
            return self._final_stats or self._collect_stats()
        self._check_usable()
        # From the first call, the backlog left by dead processes (files for our topic) counts:
        # the spool reads the files it has not adopted yet, read-only and without waiting.
        return self._collect_stats()

    def _collect_stats(self) -> Stats:
        counts = self._spool.counts(orphans=True)
        counters = self._flusher.counters
        recent = counters.batch_sizes
        # Claimed records are in flight only once a broker connection is known to be live;
        # before that (never connected, or unreachable now) they are still waiting: spooled.
        in_flight = counts.in_flight if counters.broker_connected else 0
        return Stats(
            spooled=counts.pending + counts.in_flight - in_flight,
            in_flight=in_flight,
            delivered=counters.delivered,
            dead_lettered=counters.dead_lettered,
            dropped={**counts.dropped, **({"before_send": self._dropped_by_hook} if self._dropped_by_hook else {})},
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
            max_attempts=max(1, self._config.max_retries),
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop accepting events, deliver what can be delivered within ``timeout`` (``None``: no
        limit), keep the rest on disk.

        Never raises because events are undelivered, and releases the spool files within
        the timeout even if a broker connection hangs. When no broker is reachable (known
        before or during the close), it returns at once: the events stay on disk, and one log
        line says how many.
        """
        timeout = check_timeout("timeout", timeout)
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _LIVE_CLIENTS.discard(self)
        deadline = deadline_of(timeout)
        if self._pid != os.getpid():  # first call in a forked child: nothing of ours runs yet
            self._spool.close()
            return
        try:
            self._spool.commit_buffered()
        except Exception:
            logger.exception("could not write buffered events while closing")
        # Known unreachable: a short grace for the flusher to put its batch back, not the whole timeout.
        # Known, but perhaps stale (only an ack clears it, and the flusher may be in a backoff while
        # the brokers are back): one probe says whether it still holds.
        unreachable = self._flusher.recheck_unreachable()
        stopped = self._flusher.stop(left_until(deadline, CLOSE_GRACE if unreachable else None))
        unreachable = unreachable or self._flusher.unreachable  # or found so during the close
        if stopped:
            left = 0.0 if unreachable else left_until(deadline)
            self._flusher.close_transport(5.0 if left is None else left)  # nothing is pending now: quick
        else:
            logger.info("closing while the flusher still waits on a broker call; its batch stays on disk")
        # A send(wait=True) still waiting would wait for an ack that no flusher will ever see.
        self._flusher.end_waiters(lambda event_id: ClientClosedError(
            f"the client closed before event {event_id} was acked; it stays in the spool and is delivered"
            " by the next client on this spool directory"))  # fmt: skip
        try:
            self._final_stats = self._collect_stats()
        except Exception:
            logger.debug("could not collect the final stats", exc_info=True)
        if unreachable and self._final_stats is not None:
            left = self._final_stats.spooled + self._final_stats.in_flight
            logger.info(
                "closed with Kafka unreachable (%s): %d events stay in the spool for the next start",
                ", ".join(self._config.brokers), left,
            )  # fmt: skip
        self._spool.close()
        counts_left = "" if stopped else " (in-flight events return to pending on next start)"
        logger.debug("client closed%s", counts_left)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _check_usable(self) -> None:
        if self._closed:
            raise ClientClosedError("the client is closed")
        if self._pid != os.getpid():
            # First call in a forked child: the parent's flusher thread does not exist here
            # and its producer's sockets are the parent's. Start our own; the spool opens a
            # file of the child's own on its next use. One thread does it; others wait.
            with _fork_lock:
                if self._pid != os.getpid():
                    _ABANDONED.append(self._flusher)
                    self._start_flusher()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Client topic={self._config.topic!r} brokers={self._config.brokers!r} {state}>"


#: Serialises restarting flushers in a forked child (a fresh lock in every child).
_fork_lock = threading.Lock()


def _reset_fork_lock() -> None:
    global _fork_lock
    _fork_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_fork_lock)


def track_fields(
    config: Config,
    *,
    service: Any,
    model: Any,
    prompt: Any,
    response: Any,
    latency_ms: Any,
    prompt_tokens: Any = 0,
    completion_tokens: Any = 0,
    cost_usd: Any = 0.0,
    finish_reason: Any = "stop",
    trace_id: Any = None,
    span_id: Any = None,
    metadata: Any = None,
    errors: Any = None,
    prompt_embedding: Any = None,
    response_embedding: Any = None,
) -> dict[str, Any]:
    """The event fields of a ``track`` call (``Client`` and ``AsyncClient`` share it): the
    trace and span ids of the current OpenTelemetry span when the caller gave none."""
    if config.otel_trace_ids:
        trace_id, span_id = resolve_span_ids(trace_id, span_id)
    return {
        "service_name": service,
        "model": model,
        "prompt": {"text": prompt, "tokens": prompt_tokens, "embedding": prompt_embedding},
        "response": {
            "text": response,
            "tokens": completion_tokens,
            "finish_reason": finish_reason,
            "embedding": response_embedding,
        },
        "latency_ms": latency_ms,
        "cost_usd": cost_usd,
        "metadata": dict(metadata) if isinstance(metadata, Mapping) else ({} if metadata is None else metadata),
        "errors": list(errors) if isinstance(errors, list | tuple) else ([] if errors is None else errors),
        "trace_id": trace_id,
        "span_id": span_id,
    }


def cipher_for(config: Config) -> SpoolCipher | None:
    """The cipher for spooled bodies, when the configuration has an ``encryption_key``."""
    if config.encryption_key is None:
        return None
    return SpoolCipher(parse_key(config.encryption_key.get_secret_value()))


def _close_all_at_exit() -> None:
    for client in list(_LIVE_CLIENTS):
        if client._pid != os.getpid():
            continue  # inherited across fork and never used here: this process has nothing of it to close
        try:
            client.close(timeout=client.config.shutdown_timeout)
        except Exception:
            logger.exception("closing a client at exit failed")


atexit.register(_close_all_at_exit)


# --- process pools ---------------------------------------------------------------------------------
# A multiprocessing child started by fork or forkserver (every Pool worker of those) ends with
# os._exit(): atexit hooks never run there, so a worker's client would be left unclosed, its
# flusher killed mid-batch, and the records it had produced but not yet deleted delivered a
# second time by whoever adopts its file. multiprocessing runs its own finalizers before that
# os._exit, so the exit hook is registered there too, in every such child that has a client.

#: The process in which the worker exit hook is registered (multiprocessing's registry of
#: finalizers is cleared in every child it starts, so one registration per process).
_worker_hook_pid: int | None = None


def _close_at_worker_exit() -> None:
    """In a multiprocessing child, close this process's clients when the child ends."""
    global _worker_hook_pid
    if _worker_hook_pid == os.getpid() or multiprocessing.parent_process() is None:
        return
    _worker_hook_pid = os.getpid()
    multiprocessing.util.Finalize(None, _close_all_at_exit, exitpriority=10)


def _close_at_child_start(_: object) -> None:
    # multiprocessing calls this in each child it starts, once it has cleared the registry of
    # finalizers the parent left: registering here covers clients inherited or made before then.
    global _worker_hook_pid
    _worker_hook_pid = None
    _close_at_worker_exit()


class _AfterForkToken:
    """Something multiprocessing can hold weakly: its registry of after-fork hooks is weak."""


_AFTER_FORK_TOKEN = _AfterForkToken()
multiprocessing.util.register_after_fork(_AFTER_FORK_TOKEN, _close_at_child_start)
