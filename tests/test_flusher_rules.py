"""The flusher's rules, one test each, driven through ``Flusher(transport_factory=...)``.

A scripted transport stands in for Kafka here, the one use of a fake the project allows: these are
faults a real broker cannot produce on demand (a record refused three times with three different
errors, a batch half delivered and half refused, a transport that raises, an outage reported in the
middle of a batch). The spool is real (SQLite under ``tmp_path``). The tests assert what a user can
see: what the spool holds afterwards (pending rows, dead letters with their attempts and last error),
what the transport was handed (each record with the attempts the spool counted for it), the
flusher's counters (what ``Client.stats()`` reports) and its log lines.

Waits are conditions with deadlines (``wait_until``); no test sleeps. Backoff delays are read from
the flusher's jitter source (``Flusher._random``, replaced before the thread starts), the one
private seam used here: the flusher takes no clock or delay of its own to inject.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from confluent_kafka import KafkaError
from kafka import errors as kafka_errors

from sentinel_durable import Config, EventBuilder, SendError
from sentinel_durable.flusher import Flusher
from sentinel_durable.spool import Claim, ClaimedRecord, Spool, SpoolRecord, read_dead_letters
from sentinel_durable.testing import wait_until
from sentinel_durable.transports.base import DELIVERED, Link, Outcome, RecordResult, too_large
from sentinel_durable.transports.confluent import classify as classify_librdkafka
from sentinel_durable.transports.kafka_python import classify as classify_kafka_python

TOPIC = "llm.telemetry"
BROKER = "127.0.0.1:1"  # never dialled: the scripted transport answers for the broker
#: Backoff short enough that a record refused max_retries times settles in milliseconds.
FAST = {"retry_backoff": 0.001, "max_retry_backoff": 0.002}
WAIT = 5.0  # seconds any condition below may take on a loaded machine

Respond = Callable[[Sequence[ClaimedRecord]], list[RecordResult]]


# -- the scripted transport ----------------------------------------------------------------------


class ScriptedTransport:
    """A ``Transport`` (transport.py's protocol) that answers each batch as ``respond`` says, and
    keeps what it was handed. ``factory`` is what the flusher is given as its ``transport_factory``."""

    def __init__(self, respond: Respond | None = None) -> None:
        self.respond: Respond = respond or each(lambda record: DELIVERED)
        self.batches: list[list[ClaimedRecord]] = []  # every batch handed over, as claimed
        self.timeouts: list[float] = []  # the ack timeout of each batch
        self.delivered: list[str] = []  # event ids answered DELIVERED, once per delivery
        self.made_on: list[str] = []  # the thread each time the factory was called
        self.link: Link | None = None
        self.close_error: Exception | None = None
        self.closed = threading.Event()
        self._lock = threading.Lock()

    def factory(self, config: Config, link: Link) -> ScriptedTransport:
        self.made_on.append(threading.current_thread().name)
        self.link = link
        return self

    def deliver(self, records: Sequence[ClaimedRecord], timeout: float) -> list[RecordResult]:
        with self._lock:
            self.batches.append(list(records))
            self.timeouts.append(timeout)
        results = self.respond(records)
        with self._lock:
            self.delivered += [
                record.event_id
                for record, result in zip(records, results, strict=False)  # a short answer is the flusher's to see
                if result.outcome is Outcome.DELIVERED
            ]
        return results

    def close(self, timeout: float) -> None:
        self.closed.set()
        if self.close_error is not None:
            raise self.close_error

    def attempts_seen(self, event_id: str) -> list[int]:
        """The attempt count the spool had for ``event_id`` each time it was handed over."""
        with self._lock:
            return [r.attempts for batch in self.batches for r in batch if r.event_id == event_id]

    def handed(self, event_id: str) -> int:
        return len(self.attempts_seen(event_id))


def each(answer: Callable[[ClaimedRecord], RecordResult]) -> Respond:
    """A batch answered record by record."""
    return lambda records: [answer(record) for record in records]


class Script:
    """Answers per event id, in turn: ``Script({id: [r1, r2]})`` answers r1, then r2, then ``then``."""

    def __init__(self, answers: dict[str, list[RecordResult]], then: RecordResult = DELIVERED) -> None:
        self._answers = {event_id: list(results) for event_id, results in answers.items()}
        self._then = then

    def __call__(self, records: Sequence[ClaimedRecord]) -> list[RecordResult]:
        return [self._next(record.event_id) for record in records]

    def _next(self, event_id: str) -> RecordResult:
        left = self._answers.get(event_id)
        return left.pop(0) if left else self._then


def failed(error: str = "InvalidTimestampError: the record's own fault") -> RecordResult:
    return RecordResult(Outcome.FAILED, error)


def retry(error: str = "NotLeaderForPartitionError: a leader election") -> RecordResult:
    return RecordResult(Outcome.RETRY, error)


OUTAGE = f"{BROKER}: Connection refused"


def unreachable(error: str = OUTAGE) -> RecordResult:
    return RecordResult(Outcome.RETRY, error, unreachable=True)


def blocked(error: str = "TopicAuthorizationFailedError: Kafka refuses User:ANONYMOUS writes") -> RecordResult:
    return RecordResult(Outcome.BLOCKED, error)


class JitterRecorder(random.Random):
    """The flusher's jitter source: records every draw ``(low, high)`` (``high`` is the backoff
    ceiling the flusher computed) and waits ``low`` (no time at all), or ``high`` if ``full``."""

    def __init__(self, *, full: bool = False) -> None:
        super().__init__(0)
        self.draws: list[tuple[float, float]] = []
        self._full = full

    def uniform(self, a: float, b: float) -> float:
        self.draws.append((a, b))
        return b if self._full else a


# -- the real spool, and flushers that stop at teardown ----------------------------------------


class WatchedSpool(Spool):
    """A real spool that counts the claims that found nothing: the flusher is idle after one."""

    empty_claims = 0

    def claim(self, limit: int) -> Claim | None:
        claim = super().claim(limit)
        if claim is None:
            self.empty_claims += 1
        return claim


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[WatchedSpool]:
    spool = WatchedSpool(tmp_path / "spool", topic=TOPIC)
    try:
        yield spool
    finally:
        spool.close()


MakeFlusher = Callable[..., Flusher]


@pytest.fixture
def make_flusher(spool: WatchedSpool) -> Iterator[MakeFlusher]:
    """``make_flusher(transport, start=True, jitter=None, **config)``: a flusher over ``spool``."""
    made: list[Flusher] = []

    def make(
        transport: ScriptedTransport,
        *,
        start: bool = True,
        jitter: random.Random | None = None,
        on_delivery: Callable[[list[str]], object] | None = None,
        on_error: Callable[[SendError], object] | None = None,
        **options: object,
    ) -> Flusher:
        config = Config(brokers=[BROKER], topic=TOPIC, spool_dir=spool.directory, **{**FAST, **options})
        flusher = Flusher(config, spool, transport.factory, on_delivery=on_delivery, on_error=on_error)
        if jitter is not None:
            flusher._random = jitter
        made.append(flusher)
        if start:
            flusher.start()
        return flusher

    yield make
    for flusher in made:
        flusher.stop(0)


def spool_events(spool: Spool, count: int, flusher: Flusher | None = None) -> list[str]:
    """Spool ``count`` events (wake ``flusher`` for them); their event ids, in spool order."""
    events = [
        EventBuilder().service("svc").model("m").prompt("p", 1).response("r", 1, "stop")
        .latency(1).cost(0).add_metadata("n", str(n)).build()
        for n in range(count)
    ]  # fmt: skip
    records = [SpoolRecord.from_event(event) for event in events]
    spool.put_many(records)
    if flusher is not None:
        flusher.notify_spooled()
    return [record.event_id for record in records]


def eventually(condition: Callable[[], object], description: str, timeout: float = WAIT) -> None:
    wait_until(condition, timeout, interval=0.005, description=description)


def settled(spool: Spool) -> bool:
    """Nothing pending, nothing in flight."""
    counts = spool.counts()
    return counts.pending == 0 and counts.in_flight == 0


def logged(caplog: pytest.LogCaptureFixture, start: str, level: int | None = None) -> int:
    """How many of the package's log lines start with ``start`` (at ``level``, if given)."""
    return sum(
        1
        for record in list(caplog.records)
        if record.name.startswith("sentinel_durable")
        and record.getMessage().startswith(start)
        and level in (None, record.levelno)
    )


# -- what becomes of a record, by who is at fault -------------------------------------------------


def test_a_record_refused_for_its_own_fault_is_dead_lettered_after_max_retries_attempts_with_its_last_error(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    bad, good = spool_events(spool, 2)
    refusals = [failed("refused #1"), failed("refused #2"), failed("refused #3"), *[failed("refused again")] * 3]
    transport = ScriptedTransport(Script({bad: refusals}))
    flusher = make_flusher(transport, max_retries=3)
    eventually(lambda: (flusher.counters.dead_lettered, flusher.counters.delivered) == (1, 1), "the dead letter")

    assert transport.attempts_seen(bad) == [0, 1, 2]
    (dead,) = read_dead_letters(spool.active_path)
    assert (dead.event_id, dead.attempts, dead.last_error) == (bad, 3, "refused #3")
    assert transport.delivered == [good]  # the record behind it was not held up
    assert settled(spool)


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(retry, id="a retriable failure (a leader election)"),
        pytest.param(unreachable, id="a broker outage"),
        pytest.param(blocked, id="a deployment refusal (an ACL)"),
    ],
)
def test_a_failure_not_the_records_own_counts_no_attempt_and_never_dead_letters(
    spool: WatchedSpool, make_flusher: MakeFlusher, failure: Callable[[], RecordResult]
) -> None:
    (event_id,) = spool_events(spool, 1)
    transport = ScriptedTransport(Script({event_id: [failure()] * 7}))
    flusher = make_flusher(transport, max_retries=2)
    eventually(lambda: flusher.counters.delivered == 1, "the delivery once the failure is gone")

    assert transport.attempts_seen(event_id) == [0] * 8
    assert spool.counts().dead_letters == 0


def test_a_partly_delivered_batch_acks_the_delivered_and_puts_the_rest_back_counting_only_their_own_faults(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    ok, own_fault, away, refused = spool_events(spool, 4)
    transport = ScriptedTransport(Script({own_fault: [failed()], away: [unreachable()], refused: [blocked()]}))
    flusher = make_flusher(transport, max_retries=3)
    eventually(lambda: flusher.counters.delivered == 4, "all four delivered")

    first, second = transport.batches[:2]
    assert [r.event_id for r in first] == [ok, own_fault, away, refused]
    assert {r.event_id: r.attempts for r in second} == {own_fault: 1, away: 0, refused: 0}  # ok is not sent again
    assert sorted(transport.delivered) == sorted([ok, own_fault, away, refused])


def test_a_batch_refused_for_one_records_fault_is_split_until_only_that_record_fails(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    event_ids = spool_events(spool, 8)
    poison = event_ids[5]

    def broker_refusing_batches_with_poison(records: Sequence[ClaimedRecord]) -> list[RecordResult]:
        # librdkafka reports a broker's verdict on a produce batch for every record of it
        if any(record.event_id == poison for record in records):
            return [RecordResult(Outcome.FAILED, "INVALID_TIMESTAMP", batch_refused=True)] * len(records)
        return [DELIVERED] * len(records)

    transport = ScriptedTransport(broker_refusing_batches_with_poison)
    flusher = make_flusher(transport, max_retries=1)
    eventually(lambda: (flusher.counters.dead_lettered, flusher.counters.delivered) == (1, 7), "the batch settled")

    assert sorted(transport.delivered) == sorted(set(event_ids) - {poison})  # each once
    assert [dead.event_id for dead in read_dead_letters(spool.active_path)] == [poison]


def raising_three_times_then_delivering() -> Respond:
    """A transport's answer that raises on the first three batches (a bug in it), then delivers."""
    calls = iter(range(1_000))

    def respond(records: Sequence[ClaimedRecord]) -> list[RecordResult]:
        if next(calls) < 3:
            raise RuntimeError("a bug in the transport")
        return [DELIVERED] * len(records)

    return respond


def test_a_transport_that_raises_gets_its_batch_retried_without_counting_an_attempt(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    (event_id,) = spool_events(spool, 1)
    transport = ScriptedTransport(raising_three_times_then_delivering())
    flusher = make_flusher(transport, max_retries=1)  # one counted attempt would dead-letter it
    eventually(lambda: flusher.counters.delivered == 1, "the delivery")

    assert transport.attempts_seen(event_id) == [0, 0, 0, 0]
    assert spool.counts().dead_letters == 0
    assert flusher.counters.last_error == "transport: a bug in the transport"


def test_a_transport_that_raises_is_replaced_and_its_traceback_logged_once_in_a_row(
    spool: WatchedSpool, make_flusher: MakeFlusher, caplog: pytest.LogCaptureFixture
) -> None:
    spool_events(spool, 1)
    transport = ScriptedTransport(raising_three_times_then_delivering())
    with caplog.at_level(logging.DEBUG, logger="sentinel_durable"):
        flusher = make_flusher(transport)
        eventually(lambda: flusher.counters.delivered == 1, "the delivery")

    assert len(transport.made_on) == 4  # a new transport after each failure
    tracebacks = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert len(tracebacks) == 1  # the first failure in a row; the next two at DEBUG


def test_a_batch_the_flusher_cannot_settle_goes_back_to_pending(spool: WatchedSpool, make_flusher: MakeFlusher) -> None:
    (event_id,) = spool_events(spool, 1)
    calls = iter(range(1_000))
    # A result list one short: settling the batch fails part-way, inside the flusher.
    transport = ScriptedTransport(lambda records: [] if next(calls) == 0 else [DELIVERED] * len(records))
    flusher = make_flusher(transport)
    eventually(lambda: flusher.counters.delivered == 1, "the delivery on the next try")

    assert transport.handed(event_id) == 2
    assert settled(spool)


# -- which failure is whose: the transports' classification ----------------------------------------


CONFIG = Config(brokers=[BROKER], topic=TOPIC)


@pytest.mark.parametrize(
    ("error", "outcome", "says_unreachable"),
    [
        (kafka_errors.InvalidTimestampError(), Outcome.FAILED, False),
        (kafka_errors.CorruptRecordError(), Outcome.FAILED, False),
        (kafka_errors.UnsupportedForMessageFormatError(), Outcome.FAILED, False),
        (kafka_errors.PolicyViolationError(), Outcome.FAILED, False),
        (kafka_errors.TopicAuthorizationFailedError(), Outcome.BLOCKED, False),
        (kafka_errors.InvalidTopicError(), Outcome.BLOCKED, False),
        (kafka_errors.SaslAuthenticationFailedError(), Outcome.BLOCKED, False),
        (kafka_errors.KafkaConnectionError(), Outcome.RETRY, True),
        (kafka_errors.NodeNotReadyError(), Outcome.RETRY, True),
        (kafka_errors.KafkaTimeoutError(), Outcome.RETRY, True),
        (ConnectionRefusedError(), Outcome.RETRY, True),
        (TimeoutError(), Outcome.RETRY, True),
        (kafka_errors.NotLeaderForPartitionError(), Outcome.RETRY, False),
        (kafka_errors.RequestTimedOutError(), Outcome.RETRY, False),
        (RuntimeError("anything else"), Outcome.RETRY, False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_kafka_python_errors_are_classified_by_whose_fault_they_are(
    error: BaseException, outcome: Outcome, says_unreachable: bool
) -> None:
    result = classify_kafka_python(error, CONFIG)
    assert (result.outcome, result.unreachable) == (outcome, says_unreachable)
    assert type(error).__name__ in (result.error or "")


@pytest.mark.parametrize(
    ("code", "outcome", "says_unreachable", "batch_refused"),
    [
        (KafkaError.INVALID_TIMESTAMP, Outcome.FAILED, False, True),
        (KafkaError.INVALID_RECORD, Outcome.FAILED, False, True),
        (KafkaError.INVALID_MSG, Outcome.FAILED, False, True),
        (KafkaError.POLICY_VIOLATION, Outcome.FAILED, False, False),
        (KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT, Outcome.FAILED, False, False),
        (KafkaError._INVALID_ARG, Outcome.FAILED, False, False),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, Outcome.BLOCKED, False, False),
        (KafkaError.TOPIC_EXCEPTION, Outcome.BLOCKED, False, False),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, Outcome.BLOCKED, False, False),
        (KafkaError._UNKNOWN_TOPIC, Outcome.BLOCKED, False, False),
        (KafkaError.SASL_AUTHENTICATION_FAILED, Outcome.BLOCKED, False, False),
        (KafkaError._AUTHENTICATION, Outcome.BLOCKED, False, False),
        (KafkaError._TRANSPORT, Outcome.RETRY, True, False),
        (KafkaError._ALL_BROKERS_DOWN, Outcome.RETRY, True, False),
        (KafkaError._MSG_TIMED_OUT, Outcome.RETRY, True, False),
        (KafkaError._RESOLVE, Outcome.RETRY, True, False),
        (KafkaError.REQUEST_TIMED_OUT, Outcome.RETRY, True, False),
        (KafkaError.NOT_LEADER_FOR_PARTITION, Outcome.RETRY, False, False),
        (KafkaError.LEADER_NOT_AVAILABLE, Outcome.RETRY, False, False),
    ],
    ids=lambda value: KafkaError(value).name() if isinstance(value, int) and not isinstance(value, bool) else None,
)
def test_librdkafka_errors_are_classified_by_whose_fault_they_are(
    code: int, outcome: Outcome, says_unreachable: bool, batch_refused: bool
) -> None:
    result = classify_librdkafka(KafkaError(code), CONFIG)
    assert (result.outcome, result.unreachable, result.batch_refused) == (outcome, says_unreachable, batch_refused)
    assert KafkaError(code).name() in (result.error or "")


def test_a_record_too_large_for_the_topic_fails_on_its_own_naming_its_size_and_the_limit() -> None:
    record = ClaimedRecord(row_id=1, data=b"x" * 2000, event_id="e", service_name="svc", model="m",
                           event_time_ms=0, attempts=0, spooled_at=0.0)  # fmt: skip
    result = too_large("MessageSizeTooLargeError", record, 1000, TOPIC)

    assert (result.outcome, result.batch_refused) == (Outcome.FAILED, True)
    assert "about 2" in (result.error or "")  # the record's size, value and framing
    assert "more than topic 'llm.telemetry' accepts (max.message.bytes=1000)" in (result.error or "")


# -- backoff -------------------------------------------------------------------------------------------


def test_backoff_doubles_from_retry_backoff_up_to_max_retry_backoff_with_full_jitter(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    spool_events(spool, 1)
    jitter = JitterRecorder()
    make_flusher(ScriptedTransport(each(lambda record: retry())), jitter=jitter,
                 retry_backoff=0.01, max_retry_backoff=0.1)  # fmt: skip
    eventually(lambda: len(jitter.draws) >= 7, "seven backoffs")

    lows, ceilings = zip(*jitter.draws[:7], strict=True)
    assert lows == (0, 0, 0, 0, 0, 0, 0)  # full jitter: anywhere from no wait to the ceiling
    assert ceilings == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.1, 0.1, 0.1])


def test_backoff_starts_over_after_a_delivered_batch(spool: WatchedSpool, make_flusher: MakeFlusher) -> None:
    (first,) = spool_events(spool, 1)
    jitter = JitterRecorder()
    transport = ScriptedTransport(Script({first: [retry()] * 3}, then=DELIVERED))
    flusher = make_flusher(transport, jitter=jitter, retry_backoff=0.01, max_retry_backoff=1.0)
    eventually(lambda: flusher.counters.delivered == 1, "the first event delivered")
    transport.respond = each(lambda record: retry())
    spool_events(spool, 1, flusher)
    eventually(lambda: len(jitter.draws) >= 5, "two backoffs for the second event")

    assert [high for _, high in jitter.draws[:5]] == pytest.approx([0.01, 0.02, 0.04, 0.01, 0.02])


def test_flush_and_close_cut_a_backoff_wait_short(spool: WatchedSpool, make_flusher: MakeFlusher) -> None:
    (event_id,) = spool_events(spool, 1)
    jitter = JitterRecorder(full=True)  # the whole ceiling: a 30 s wait
    transport = ScriptedTransport(Script({event_id: [retry()]}))
    flusher = make_flusher(transport, jitter=jitter, retry_backoff=30.0, max_retry_backoff=60.0)
    eventually(lambda: jitter.draws, "the flusher backing off")
    flusher.kick()

    eventually(lambda: transport.delivered, "the delivery after the kick")


# -- stopping ------------------------------------------------------------------------------------------


def test_stopping_retries_until_the_deadline_then_ends_leaving_the_events_spooled(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    spool_events(spool, 3)
    jitter = JitterRecorder(full=True)  # every backoff 30 s: only the deadline can end one early
    transport = ScriptedTransport(each(lambda record: retry()))
    flusher = make_flusher(transport, jitter=jitter, retry_backoff=30.0, max_retry_backoff=60.0)
    eventually(lambda: jitter.draws, "the flusher backing off")
    flusher.stop(0.3)

    eventually(transport.closed.is_set, "the flusher ending and closing its transport")
    assert len(transport.batches) >= 2  # stop() woke it for one more try before the deadline
    assert spool.counts().pending == 3


def test_a_batch_waits_for_acks_at_most_write_timeout_and_never_past_the_close_deadline(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    spool_events(spool, 1)
    jitter = JitterRecorder(full=True)
    transport = ScriptedTransport(each(lambda record: retry()))
    flusher = make_flusher(transport, jitter=jitter, write_timeout=7.0, retry_backoff=30.0, max_retry_backoff=60.0)
    eventually(lambda: jitter.draws, "the first batch")
    flusher.stop(0.3)

    eventually(lambda: len(transport.timeouts) >= 2, "the batch tried while stopping")
    assert transport.timeouts[0] == 7.0
    assert 0.1 <= transport.timeouts[1] <= 0.3


def test_stopping_while_the_brokers_are_away_ends_at_once_and_tells_the_transport_to_stop_waiting(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    spool_events(spool, 2)
    transport = ScriptedTransport()

    def outage_mid_batch(records: Sequence[ClaimedRecord]) -> list[RecordResult]:
        assert transport.link is not None
        transport.link.unreachable(OUTAGE)  # as a probe finds it, while acks are awaited
        transport.link.abandoned.wait(30)  # as the real transports wait for acks
        return [unreachable()] * len(records)

    transport.respond = outage_mid_batch
    flusher = make_flusher(transport)
    eventually(lambda: flusher.unreachable, "the outage")

    assert flusher.stop(timeout=5.0) is True
    assert len(transport.batches) == 1  # no further try once stopping with the brokers away
    assert transport.link is not None
    assert transport.link.abandoned.is_set()
    assert spool.counts().pending == 2


def test_a_transport_that_raises_on_close_does_not_escape_the_flusher_thread(
    spool: WatchedSpool, make_flusher: MakeFlusher, monkeypatch: pytest.MonkeyPatch
) -> None:
    escaped: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    spool_events(spool, 1)
    transport = ScriptedTransport()
    transport.close_error = RuntimeError("close failed")
    flusher = make_flusher(transport)
    eventually(lambda: flusher.counters.delivered == 1, "the delivery")

    assert flusher.stop(timeout=5.0) is True
    assert transport.closed.is_set()
    assert escaped == []


def test_the_flusher_ends_when_its_spool_is_closed_under_it(spool: WatchedSpool, make_flusher: MakeFlusher) -> None:
    spool_events(spool, 1)
    transport = ScriptedTransport()
    flusher = make_flusher(transport)
    eventually(lambda: flusher.counters.delivered == 1, "the delivery")
    spool.close()
    flusher.notify_spooled()

    eventually(transport.closed.is_set, "the flusher ending and closing its transport")


# -- reachability, as the transport reports it ----------------------------------------------------------


def test_an_outage_the_transport_reports_mid_batch_shows_before_the_batch_ends(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    spool_events(spool, 1)
    release = threading.Event()
    transport = ScriptedTransport()

    def outage_then_wait(records: Sequence[ClaimedRecord]) -> list[RecordResult]:
        assert transport.link is not None
        transport.link.unreachable(OUTAGE)
        release.wait(WAIT)
        return [DELIVERED] * len(records)

    transport.respond = outage_then_wait
    flusher = make_flusher(transport)
    try:
        eventually(lambda: flusher.unreachable, "the outage, while the batch waits")
        assert not transport.delivered
        assert flusher.counters.last_error == OUTAGE
    finally:
        release.set()


def test_an_outage_is_logged_once_as_it_starts_and_once_when_the_first_ack_ends_it(
    spool: WatchedSpool, make_flusher: MakeFlusher, caplog: pytest.LogCaptureFixture
) -> None:
    (event_id,) = spool_events(spool, 1)
    transport = ScriptedTransport(Script({event_id: [unreachable()] * 5}))
    with caplog.at_level(logging.INFO, logger="sentinel_durable"):
        flusher = make_flusher(transport)
        eventually(
            lambda: logged(caplog, "Kafka is reachable again") and flusher.counters.broker_connected,
            "the recovery once the broker is back",
        )

    assert logged(caplog, "Kafka is unreachable", logging.WARNING) == 1, caplog.messages
    assert logged(caplog, "Kafka is reachable again", logging.INFO) == 1, caplog.messages
    assert flusher.counters.last_error is None  # the outage's error went with it


def test_once_the_transport_is_closed_its_link_tells_the_flusher_nothing(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    spool_events(spool, 1)
    transport = ScriptedTransport()
    flusher = make_flusher(transport)
    eventually(lambda: flusher.counters.delivered == 1, "the delivery")
    assert flusher.stop(timeout=5.0) is True
    assert transport.link is not None

    transport.link.unreachable(OUTAGE)  # a late callback, as librdkafka serves them in its close
    assert flusher.counters.broker_connected is True


def test_a_deployment_refusal_is_reported_once_at_error_until_the_events_are_accepted_again(
    spool: WatchedSpool, make_flusher: MakeFlusher, caplog: pytest.LogCaptureFixture
) -> None:
    (event_id,) = spool_events(spool, 1)
    seen_blocked: list[bool] = []
    script = Script({event_id: [blocked()] * 5})

    def refusing(records: Sequence[ClaimedRecord]) -> list[RecordResult]:
        seen_blocked.append(flusher.blocked)
        return script(records)

    transport = ScriptedTransport(refusing)
    flusher = make_flusher(transport, start=False)
    with caplog.at_level(logging.INFO, logger="sentinel_durable"):
        flusher.start()
        eventually(
            lambda: logged(caplog, "Kafka accepts the events again") and not flusher.blocked,
            "the delivery once the ACL allows it",
        )

    assert logged(caplog, "Kafka refuses the events", logging.ERROR) == 1, caplog.messages
    assert logged(caplog, "Kafka accepts the events again", logging.INFO) == 1, caplog.messages
    assert seen_blocked == [False, True, True, True, True, True]  # blocked from the first refusal on


# -- the transport's life, and the flusher's pace ---------------------------------------------------------


def test_the_transport_is_made_on_the_flusher_thread_once_there_is_something_to_deliver_and_then_kept(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    transport = ScriptedTransport()
    flusher = make_flusher(transport)
    eventually(lambda: spool.empty_claims >= 1, "the flusher finding the spool empty")
    assert transport.made_on == []

    spool_events(spool, 1, flusher)
    eventually(lambda: flusher.counters.delivered == 1, "the first delivery")
    spool_events(spool, 1, flusher)
    eventually(lambda: flusher.counters.delivered == 2, "the second delivery")
    assert transport.made_on == ["sentinel-durable-flusher"]


def test_a_spooled_event_wakes_an_idle_flusher(spool: WatchedSpool, make_flusher: MakeFlusher) -> None:
    transport = ScriptedTransport()
    flusher = make_flusher(transport)
    eventually(lambda: spool.empty_claims >= 1, "the flusher idle")
    spool_events(spool, 1, flusher)

    eventually(lambda: transport.delivered, "the delivery (the idle wait is 10 s)", timeout=3.0)


def test_a_trickle_of_events_is_gathered_for_batch_timeout_into_one_batch(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    transport = ScriptedTransport()
    flusher = make_flusher(transport, batch_timeout=0.5)
    spool_events(spool, 1, flusher)
    eventually(lambda: flusher.counters.delivered == 1, "the first event delivered")
    for _ in range(3):  # one at a time, as senders do
        spool_events(spool, 1, flusher)

    eventually(lambda: len(transport.delivered) == 4, "the trickle delivered")
    assert [len(batch) for batch in transport.batches] == [1, 3]


def test_the_flusher_adopts_spool_files_left_behind_and_delivers_them(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    with Spool(spool.directory, topic=TOPIC) as gone:  # a client that closed with a backlog
        left = spool_events(gone, 3)
    transport = ScriptedTransport()
    make_flusher(transport)

    eventually(lambda: sorted(transport.delivered) == sorted(left), "the backlog delivered")


# -- what the flusher tells its caller ------------------------------------------------------------------


def test_counters_count_each_record_delivered_retried_and_failed(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    _, own_fault, away = spool_events(spool, 3)
    transport = ScriptedTransport(Script({own_fault: [failed()], away: [unreachable()]}))
    flusher = make_flusher(transport, max_retries=3)
    eventually(lambda: flusher.counters.delivered == 3, "all three delivered")

    counters = flusher.counters
    sizes = {r.event_id: len(r.data) for r in transport.batches[0]}
    assert (counters.delivered, counters.retries, counters.dead_lettered) == (3, 2, 0)
    assert counters.errors == 2  # the record at fault, and one for the batch's records the broker was away for
    assert (counters.writes, counters.batch_sizes, counters.bytes) == (2, [1, 2], sum(sizes.values()))


def test_a_send_waiting_for_delivery_learns_of_the_ack_or_of_the_dead_letter_and_its_attempts(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    ok, bad = spool_events(spool, 2)
    transport = ScriptedTransport(Script({bad: [failed("refused #1"), failed("refused #2")]}))
    flusher = make_flusher(transport, start=False, max_retries=2)
    acked, dead = flusher.waiters.register(ok), flusher.waiters.register(bad)
    flusher.start()

    assert acked.done.wait(WAIT)
    assert acked.error is None
    assert dead.done.wait(WAIT)
    assert isinstance(dead.error, SendError)
    assert (dead.error.event_id, dead.error.retries) == (bad, 2)
    assert "refused #2" in str(dead.error)


def test_every_send_waiting_for_one_event_id_is_resolved(spool: WatchedSpool, make_flusher: MakeFlusher) -> None:
    (event_id,) = spool_events(spool, 1)
    flusher = make_flusher(ScriptedTransport(), start=False)
    first, second = flusher.waiters.register(event_id), flusher.waiters.register(event_id)
    flusher.start()

    assert first.done.wait(WAIT)  # with one waiter per id, the first was replaced and waited forever
    assert second.done.wait(WAIT)
    assert (first.error, second.error) == (None, None)


def test_a_dead_letters_send_error_chains_the_librarys_exception(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    (bad,) = spool_events(spool, 1)
    refusal = kafka_errors.InvalidTimestampError("the broker's verdict")
    result = classify_kafka_python(refusal, Config(brokers=[BROKER], topic=TOPIC))
    errors: list[SendError] = []
    flusher = make_flusher(ScriptedTransport(Script({bad: [result]})), on_error=errors.append, max_retries=1)
    eventually(lambda: errors, "on_error for the dead letter")

    assert result.cause is refusal
    assert errors[0].__cause__ is refusal
    assert flusher.counters.dead_lettered == 1


def test_a_callback_that_raises_is_counted_and_the_other_callbacks_still_run(
    spool: WatchedSpool, make_flusher: MakeFlusher
) -> None:
    _, bad = spool_events(spool, 2)
    errors: list[SendError] = []

    def on_delivery(event_ids: list[str]) -> None:
        raise ValueError("the application's bug")

    transport = ScriptedTransport(Script({bad: [failed()]}))
    flusher = make_flusher(transport, on_delivery=on_delivery, on_error=errors.append, max_retries=1)
    eventually(lambda: errors, "on_error for the dead letter")

    assert [error.event_id for error in errors] == [bad]
    assert flusher.counters.last_error is not None
    assert flusher.counters.last_error.startswith("callback on_delivery raised: ValueError")
    later = spool_events(spool, 1, flusher)
    eventually(lambda: transport.delivered[-1:] == later, "delivery going on")
