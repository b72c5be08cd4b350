"""The flusher: one background thread per client that drains the spool into Kafka.

The loop: claim a batch from the spool, hand it to the transport, wait for the acks, then
settle each record in the spool — delete what was delivered, put back what may be retried,
dead-letter what failed ``max_retries`` times for a reason of its own. Retriable failures
back off exponentially with full jitter, capped at ``max_retry_backoff``, and are retried
forever; a wait is cut short by ``flush``/``close`` and never outlasts the close deadline.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

from .config import Config
from .errors import SendError
from .health import Health
from .records import ClaimedRecord
from .spool import Claim, Spool
from .stats import FlusherCounters
from .transports import Link, Outcome, RecordResult, Transport, create_transport, probe_brokers
from .transports.base import deliver_isolating
from .waiters import Waiters, dead_letter_error, dead_letter_of

__all__ = ["DEFAULT_BATCH", "Flusher"]

logger = logging.getLogger(__name__)

#: Events claimed per batch when ``batch_size`` is 0.
DEFAULT_BATCH = 1000
#: After a batch smaller than batch_size, the flusher waits this long (or batch_timeout) for more.
MIN_LINGER = 0.005
#: How often an idle flusher looks for spool files left by dead processes, and expires old events.
HOUSEKEEPING_INTERVAL = 10.0


class Flusher:
    """Owns the background thread, the transport it uses, and the counters it keeps."""

    def __init__(
        self,
        config: Config,
        spool: Spool,
        transport_factory: Callable[[Config, Link], Transport] = create_transport,
        *,
        on_delivery: Callable[[list[str]], object] | None = None,
        on_error: Callable[[SendError], object] | None = None,
    ) -> None:
        self._config = config
        self._on_delivery = on_delivery
        self._on_error = on_error
        self._spool = spool
        self._transport_factory = transport_factory
        self._transport: Transport | None = None
        self._transport_failures = 0  # deliveries in a row that raised
        self.batch_size = config.batch_size or DEFAULT_BATCH
        self._linger = max(config.batch_timeout, MIN_LINGER)
        self.counters = FlusherCounters()
        self._work = threading.Event()  # set by senders: something new is in the spool
        self._kick = threading.Event()  # set by flush/close: cut a backoff wait short
        self._stop = threading.Event()  # stop once the spool is empty or the deadline passes
        self._deadline = float("inf")
        self._settled = threading.Condition()  # notified after every batch is settled
        self._adoption = threading.Condition()  # adoption passes asked for (by flush) and done
        self._adoptions = (0, 0)  # (passes asked for, passes done)
        self._running = False
        self.waiters = Waiters()  # callers of send(wait=True)
        self._thread: threading.Thread | None = None
        self._random = random.Random()
        self.health = Health(self.counters, config.brokers)
        self._link = Link(self._link_changed)  # the transport reports reachability through it, mid-batch

    # -- control (caller threads) ------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self.run, name="sentinel-durable-flusher", daemon=True)
        self._thread.start()

    def adopt_orphans(self, deadline: float) -> bool:
        """Have the flusher thread adopt the spool files left by dead processes now, and wait for it
        until ``deadline`` (``time.monotonic()``). ``flush`` calls this: opening and checking every
        orphan may take long, and is never done on the caller's thread. True once a pass ran."""
        with self._adoption:
            asked, done = self._adoptions
            self._adoptions = (asked + 1, done)
        self.kick()
        with self._adoption:
            return self._adoption.wait_for(
                lambda: self._adoptions[1] > asked or not self._running, timeout=max(0.0, deadline - time.monotonic())
            ) and self._adoptions[1] > asked

    @property
    def unreachable(self) -> bool:
        """True while the brokers are known to be unreachable (refused, silent, unresolvable)."""
        return self.counters.broker_connected is False

    @property
    def blocked(self) -> bool:
        """True while the deployment refuses every record (a denied or missing topic, a refused login)."""
        return self.health.blocked

    def notify_spooled(self) -> None:
        self._work.set()

    def kick(self) -> None:
        """Wake the thread now, even out of a backoff wait (flush and close call this)."""
        self._kick.set()
        self._work.set()

    def wait_settled(self, timeout: float) -> None:
        """Wait until a batch is settled, or ``timeout`` seconds."""
        with self._settled:
            self._settled.wait(timeout)

    def stop(self, timeout: float | None) -> bool:
        """Deliver what can be delivered within ``timeout`` seconds (``None``: no limit), then stop;
        True if the thread ended."""
        self._deadline = float("inf") if timeout is None else time.monotonic() + timeout
        self._stop.set()
        if self.unreachable or (timeout is not None and timeout <= 0):
            self._link.abandoned.set()  # stop waiting for acks that are not coming: the batch stays on disk
        self.kick()
        if self._thread is None:
            return True
        self._thread.join(timeout=None if timeout is None else max(0.0, timeout))
        return not self._thread.is_alive()

    def close_transport(self, timeout: float) -> None:
        # First the link: a transport closed on the caller's thread (librdkafka serves its
        # callbacks in that flush) must not touch the counters or log the outage from there.
        self._link.close()
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close(timeout)

    def recheck_unreachable(self) -> bool:
        """Whether the brokers are still unreachable, asked again with one probe when they were known
        to be: the flag turns back only on an ack, and the flusher may sit in a backoff while the
        brokers are back (``close()`` then delivers with its whole timeout instead of giving up)."""
        if not self.unreachable:
            return False
        if probe_brokers(self._config) is not None:
            return True
        logger.debug("a broker takes connections again (%s)", ", ".join(self._config.brokers))
        with self.counters.lock:
            self.counters.broker_connected = None  # not known to be down; the next ack says connected
        return False

    # -- the thread -------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        finally:
            with self._adoption:
                self._running = False  # nobody waits for a pass that will not come
                self._adoption.notify_all()
            # However the loop ended (close went ahead without us, a broker call hung past the
            # deadline), never leave a producer and its sockets behind.
            try:
                self.close_transport(0)
            except Exception:
                logger.debug("closing the transport failed", exc_info=True)

    def _run(self) -> None:
        delays: Iterator[float] | None = None
        last_housekeeping = 0.0
        # Stopping: deliver until the deadline, unless no broker is reachable (the events stay on disk).
        while not (self._stop.is_set() and (time.monotonic() >= self._deadline or self.unreachable)):
            try:
                asked = self._adoptions[0]
                if asked > self._adoptions[1] or time.monotonic() - last_housekeeping >= HOUSEKEEPING_INTERVAL:
                    last_housekeeping = time.monotonic()
                    try:
                        self._housekeeping()
                    finally:
                        with self._adoption:  # a failed pass is recorded below; a flush goes on without it
                            self._adoptions = (self._adoptions[0], asked)
                            self._adoption.notify_all()
                claim = self._spool.claim(self.batch_size)
            except Exception as exc:
                if self._spool_closed():
                    return
                self._record_error(f"spool: {exc}", exc)
                self._pause(self._next_delay(delays := delays or self._delays()))
                continue
            if claim is None:
                if self._stop.is_set():
                    return  # everything is delivered
                self._work.wait(timeout=HOUSEKEEPING_INTERVAL)
                self._work.clear()
                continue
            try:
                must_retry = self._deliver(claim)
            except Exception as exc:  # a spool failure or a bug: never let the thread die
                if self._spool_closed():
                    return  # close() went ahead without us; the claim returns to pending on next open
                self._record_error(f"flusher: {exc}", exc)
                logger.exception("flusher failed on a batch; it is retried")
                self._return_quietly(claim)
                must_retry = True
            if must_retry:
                delays = delays or self._delays()
                self._pause(self._next_delay(delays))
            else:
                delays = None
                if len(claim) < self.batch_size and not self._stop.is_set():
                    # A trickle: let a few more events gather rather than claim them one by one
                    # (every claim and ack is a transaction that senders wait behind).
                    self._pause(self._linger)

    def _housekeeping(self) -> None:
        self._spool.adopt_orphans()
        self._spool.expire()

    def _deliver(self, claim: Claim) -> bool:
        """Send one claimed batch and settle it; True when some records must be retried later."""
        if self._transport is None:
            self._transport = self._transport_factory(self._config, self._link)
        timeout = max(0.1, min(self._config.write_timeout, self._deadline - time.monotonic()))
        try:
            results = deliver_isolating(self._transport, claim.records, timeout)
        except Exception as exc:  # transports report per record; this is a bug in one
            self._transport_failed(exc)
            results = [RecordResult(Outcome.RETRY, f"transport: {exc}")] * len(claim.records)
        else:
            self._transport_failures = 0
        return self._settle(claim, results)

    def _transport_failed(self, error: Exception) -> None:
        """A transport that raised is not trusted again: closed, and a new one is made for the next
        batch. The first failure in a row is logged with its traceback, the others at DEBUG."""
        transport, self._transport = self._transport, None
        self._transport_failures += 1
        if self._transport_failures == 1:
            logger.error("the transport failed on a batch; the batch is retried with a new one", exc_info=error)
        else:
            logger.debug("the transport failed again (%d in a row): %r", self._transport_failures, error)
        if transport is not None:
            try:
                transport.close(0)
            except Exception:
                logger.debug("closing the failed transport failed", exc_info=True)

    def _settle(self, claim: Claim, results: Sequence[RecordResult]) -> bool:
        delivered: list[ClaimedRecord] = []
        waiting: dict[str | None, list[ClaimedRecord]] = defaultdict(list)  # broker away: not their fault
        failing: dict[str | None, list[ClaimedRecord]] = defaultdict(list)  # their fault: attempt counted
        dead: dict[str, list[ClaimedRecord]] = defaultdict(list)
        causes: dict[str, BaseException] = {}  # a dead letter's error -> the library's exception behind it
        unreachable: str | None = None  # the error of a result that says no broker can be reached
        blocked: str | None = None
        max_attempts = max(1, self._config.max_retries)
        for record, result in zip(claim.records, results, strict=True):
            if result.outcome is Outcome.DELIVERED:
                delivered.append(record)
            elif result.outcome is Outcome.RETRY:
                waiting[result.error].append(record)
                if result.unreachable and unreachable is None:
                    unreachable = result.error or "no broker reachable"
            elif result.outcome is Outcome.BLOCKED:  # the deployment's fault: no attempt counted
                waiting[result.error].append(record)
                blocked = blocked or result.error
            elif record.attempts + 1 >= max_attempts:
                dead[result.error or "failed"].append(record)
                if result.cause is not None:
                    causes[result.error or "failed"] = result.cause
            else:
                failing[result.error].append(record)
        self._spool.ack(claim, delivered)
        for error, records in waiting.items():
            self._spool.release(claim, records, error, count_attempt=False)
        for error, records in failing.items():
            self._spool.release(claim, records, error, count_attempt=True)
        for error, records in dead.items():
            self._spool.dead_letter(claim, records, error)
            logger.error("dead-lettered %d events after %d attempts: %s", len(records), max_attempts, error)
        self._count(claim, delivered, waiting, failing, dead, unreachable)
        self.health.report_blocked(blocked, bool(delivered), sum(map(len, waiting.values())))
        self._resolve_waiters(delivered, dead, causes)
        self._notify_callbacks(delivered, dead, causes)
        with self._settled:
            self._settled.notify_all()
        return bool(waiting or failing)

    def _count(
        self,
        claim: Claim,
        delivered: list[ClaimedRecord],
        waiting: dict[str | None, list[ClaimedRecord]],
        failing: dict[str | None, list[ClaimedRecord]],
        dead: dict[str, list[ClaimedRecord]],
        unreachable: str | None,
    ) -> None:
        counters = self.counters
        retried = sum(map(len, waiting.values())) + sum(map(len, failing.values()))
        failed = sum(map(len, failing.values())) + sum(map(len, dead.values()))
        errors = [error for group in (waiting, failing, dead) for error in group if error]
        with counters.lock:
            counters.delivered += len(delivered)
            counters.dead_lettered += sum(map(len, dead.values()))
            counters.retries += retried
            if delivered:
                counters.writes += 1
                counters.bytes += sum(len(record.data) for record in delivered)
                counters.batch_sizes = [*counters.batch_sizes[-99:], len(delivered)]
            if errors:
                counters.errors += failed + (1 if waiting else 0)
                counters.last_error = errors[-1]
        if delivered:
            self._link_changed(True, None)
        elif unreachable is not None:
            self._link_changed(False, unreachable)  # why the brokers are away, not another record's error

    def _link_changed(self, reachable: bool, reason: str | None) -> None:
        """Reachability as the transport (mid-batch) or a settled batch reports it (flusher thread only)."""
        if not reachable and self._stop.is_set():
            self._link.abandoned.set()  # closing: stop waiting for acks that are not coming
        self.health.link_changed(reachable, reason)

    def _resolve_waiters(
        self, delivered: list[ClaimedRecord], dead: dict[str, list[ClaimedRecord]], causes: dict[str, BaseException]
    ) -> None:
        if not self.waiters:
            return
        self.waiters.delivered(record.event_id for record in delivered)
        for error, records in dead.items():
            by_id = {record.event_id: record for record in records}
            self.waiters.fail(by_id, functools.partial(dead_letter_of, error, by_id, causes.get(error)))

    def _notify_callbacks(
        self, delivered: list[ClaimedRecord], dead: dict[str, list[ClaimedRecord]], causes: dict[str, BaseException]
    ) -> None:
        """Call the user's on_delivery / on_error; their exceptions are logged and counted, never ours."""
        calls: list[tuple[Callable[..., object], object]] = []
        if self._on_delivery is not None and delivered:
            calls.append((self._on_delivery, [record.event_id for record in delivered]))
        if self._on_error is not None:
            calls.extend((self._on_error, dead_letter_error(error, record, causes.get(error)))
                         for error, records in dead.items() for record in records)  # fmt: skip
        for callback, argument in calls:
            try:
                callback(argument)
            except Exception as exc:
                self._record_error(f"callback {getattr(callback, '__name__', callback)!s} raised: {exc!r}", exc)
                logger.exception("a sentinel-durable callback raised")

    # -- helpers -------------------------------------------------------------------------------

    def _delays(self) -> Iterator[float]:
        """Exponential backoff, capped: retry_backoff, twice that, ... up to max_retry_backoff."""
        delay, cap = self._config.retry_backoff, self._config.max_retry_backoff
        while True:
            yield min(delay, cap)
            delay = min(delay * 2, cap)

    def _next_delay(self, delays: Iterator[float]) -> float:
        # Full jitter (a uniform pick in [0, delay]) from a generator of our own, so that the
        # application's random sequence is never advanced from our thread.
        return self._random.uniform(0, next(delays))

    def _pause(self, seconds: float) -> None:
        """Back off, unless flush/close kicks us or the close deadline comes first."""
        seconds = min(seconds, max(0.0, self._deadline - time.monotonic()))
        if self._kick.wait(timeout=seconds):
            self._kick.clear()

    def _record_error(self, message: str, exc: BaseException) -> None:
        with self.counters.lock:
            self.counters.errors += 1
            self.counters.last_error = message
        logger.debug("flusher error", exc_info=exc)

    def _return_quietly(self, claim: Claim) -> None:
        try:
            self._spool.return_in_flight(claim)
        except Exception:
            logger.debug("could not return a claim; it returns to pending when the file is next opened")

    def _spool_closed(self) -> bool:
        return self._spool.closed
