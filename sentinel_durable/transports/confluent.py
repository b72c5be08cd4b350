"""The fast transport: confluent-kafka (librdkafka), for high-volume batch jobs.

``transport="confluent"``, installed with ``pip install 'sentinel-durable[fast]'``. Same
semantics as the kafka-python transport: one outcome per record (delivered, retry, failed),
the same key, headers and timestamp, the same dead-lettering. librdkafka does its work on
threads of its own, outside the GIL, so draining does not slow the senders down.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from ..config import Config
from ..records import ClaimedRecord
from .base import (
    DELIVERED,
    PROBE_AFTER,
    PROBE_TIMEOUT,
    Link,
    Outcome,
    ProbeSchedule,
    RecordResult,
    TopicSizeLimit,
    login_refused,
    probe_brokers,
    record_headers,
    record_key,
    too_large,
    topic_denied,
    topic_missing,
)

logger = logging.getLogger(__name__)

#: librdkafka error codes that belong to one record: dead-lettered after max_retries attempts.
_RECORD_FAILURES = frozenset(
    {
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        KafkaError.POLICY_VIOLATION,
        KafkaError.INVALID_RECORD,
        KafkaError._INVALID_ARG,
    }
)
_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
#: Broker errors about one record that librdkafka reports for every record of its batch.
_BATCH_VERDICTS = frozenset({KafkaError.INVALID_TIMESTAMP, KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG})
#: Codes that belong to the deployment: never dead-lettered, retried until an operator fixes it.
_TOPIC_REFUSED = frozenset({KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.TOPIC_EXCEPTION})
_TOPIC_MISSING = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})
#: Client-level errors that say why nothing gets through better than "all brokers down" does.
_LOGIN_REFUSED = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})
_SPECIFIC_CLIENT_ERRORS = _LOGIN_REFUSED | {KafkaError._SSL}
#: Codes that mean no broker could be reached.
_UNREACHABLE = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.REQUEST_TIMED_OUT,
    }
)
_ACKS = {-1: "all", 0: "0", 1: "1"}
#: Producer settings an AdminClient does not take.
_PRODUCER_ONLY = frozenset({"acks", "compression.type", "linger.ms", "batch.size", "enable.idempotence",
                            "message.timeout.ms", "request.timeout.ms"})  # fmt: skip


#: How long a batch without acks waits for the brokers to say whether its topic exists.
_TOPIC_CHECK_TIMEOUT = 0.5

_LIBRDKAFKA = logging.getLogger("librdkafka")


class _LibrdkafkaAtDebug:
    """The logger librdkafka gets when ``client_library_logs`` is off: each of its lines goes to the
    ``librdkafka`` logger at DEBUG, so that an outage does not flood the application's logs (our one
    WARNING reports it) and ``logging.getLogger("librdkafka").setLevel(logging.DEBUG)`` still shows them."""

    def log(self, level: int, message: str, *args: Any) -> None:
        _LIBRDKAFKA.debug(message, *args)


#: librdkafka's client-level codes that say no broker can be reached (reported to the link at once).
_ALL_DOWN = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE})


def producer_settings(config: Config) -> dict[str, Any]:
    """librdkafka settings for a configuration (secrets included: never log this)."""
    write_ms = int(config.write_timeout * 1000)
    read_ms = int(config.read_timeout * 1000)
    settings: dict[str, Any] = {
        "bootstrap.servers": ",".join(config.brokers),
        "client.id": "sentinel-durable",
        "acks": _ACKS[config.require_acks],
        "compression.type": config.compression,
        "linger.ms": max(5, int(config.batch_timeout * 1000)),
        # librdkafka refuses a record above message.max.bytes (its default is 1000000): follow
        # max_message_bytes, which the send-time check already holds every record to.
        "message.max.bytes": config.max_message_bytes,
        "batch.size": min(1 << 20, config.max_message_bytes),
        # We retry ourselves, forever; duplicates carry their event_id.
        "enable.idempotence": False,
        "message.timeout.ms": write_ms,
        "request.timeout.ms": read_ms,  # how long one broker response may take
        "socket.timeout.ms": read_ms,
        "reconnect.backoff.ms": int(config.retry_backoff * 1000),
        "reconnect.backoff.max.ms": int(config.max_retry_backoff * 1000),
        "security.protocol": config.security_protocol.lower(),
        # librdkafka logs every reconnect attempt (at ERROR): demoted to DEBUG unless the user wants them.
        "logger": _LIBRDKAFKA if config.client_library_logs else _LibrdkafkaAtDebug(),
    }
    if config.sasl_mechanism is not None:
        settings["sasl.mechanisms"] = config.sasl_mechanism
        settings["sasl.username"] = config.sasl_username
        if config.sasl_password is not None:
            settings["sasl.password"] = config.sasl_password.get_secret_value()
    for option, key in (("ssl_cafile", "ssl.ca.location"), ("ssl_certfile", "ssl.certificate.location"),
                        ("ssl_keyfile", "ssl.key.location")):  # fmt: skip
        path = getattr(config, option)
        if path is not None:
            settings[key] = str(path)
    if config.ssl_password is not None:
        settings["ssl.key.password"] = config.ssl_password.get_secret_value()
    return settings


def classify(error: KafkaError, config: Config) -> RecordResult:
    code = error.code()
    text = f"KafkaError {error.name()}: {error.str()}"
    if code in _TOPIC_REFUSED:
        return topic_denied(config, text)
    if code in _TOPIC_MISSING:
        return topic_missing(config, text)
    if code in _LOGIN_REFUSED:
        return login_refused(text)
    if code in _RECORD_FAILURES:
        # A broker verdict on a produce batch lands on every record of it: isolate the culprit.
        return RecordResult(Outcome.FAILED, text, batch_refused=code in _BATCH_VERDICTS, cause=KafkaException(error))
    return RecordResult(Outcome.RETRY, text, unreachable=code in _UNREACHABLE, cause=KafkaException(error))


class ConfluentTransport:
    def __init__(self, config: Config, link: Link | None = None) -> None:
        self._config = config
        self._link = link or Link()
        self._transport_error: str | None = None  # the last _TRANSPORT error: it names the broker and why
        self._producer: Producer | None = None
        self._fatal: str | None = None
        self._client_error: str | None = None  # the last client-level error: why nothing is acked
        self._client_error_code: int | None = None
        self._all_down: str | None = None  # librdkafka said all brokers are down; not yet checked by a probe
        self._probes = ProbeSchedule()
        self._limit = TopicSizeLimit(config, self._read_size_limit)

    def _ensure_producer(self) -> Producer:
        if self._producer is None:
            self._fatal = None
            self._producer = Producer(producer_settings(self._config) | {"error_cb": self._on_error})
        return self._producer

    def _on_error(self, error: KafkaError) -> None:
        # Client-level errors (all brokers down, authentication...) come here, not per record,
        # served on the flusher thread while it waits in flush(): the link hears of an outage at once.
        if error.code() == KafkaError._TRANSPORT:
            self._transport_error = error.str()
        elif error.code() in _ALL_DOWN and self._client_error_code not in _SPECIFIC_CLIENT_ERRORS:
            # "All brokers down" also follows a broker closing idle connections: it is an outage
            # only if the brokers do not take a new connection either. The TCP probe that tells is
            # made by deliver(), between its flush slices: never inside librdkafka's callback.
            why = self._transport_error or f"{', '.join(self._config.brokers)}: {error.str()}"
            self._all_down = f"{why} ({error.name()})"
        if error.fatal():
            self._fatal = f"{error.name()}: {error.str()}"
        if self._client_error_code in _SPECIFIC_CLIENT_ERRORS and error.code() not in _SPECIFIC_CLIENT_ERRORS:
            return  # "all brokers down" after a refused login: the login is the news
        self._client_error = f"{error.name()}: {error.str()}"
        self._client_error_code = error.code()
        logger.debug("librdkafka: %s", error.str())

    def deliver(self, records: Sequence[ClaimedRecord], timeout: float) -> list[RecordResult]:
        deadline = time.monotonic() + timeout
        producer = self._ensure_producer()
        results: list[RecordResult | None] = [None] * len(records)
        failures: dict[int, KafkaError] = {}  # classified after flush: some need a broker request
        topic = self._config.topic

        acked = False
        settled = False  # the batch's results are given: a later callback (a purged message) changes nothing

        def delivered(index: int, error: KafkaError | None, _message: object) -> None:
            nonlocal acked
            if settled:
                return
            if error is None:
                results[index] = DELIVERED
                if not acked:
                    acked = True
                    self._transport_error = self._all_down = None
                    self._probes.acked()
                    self._link.reachable()
            else:
                failures[index] = error

        for index, record in enumerate(records):
            callback = functools.partial(delivered, index)
            while True:
                try:
                    producer.produce(
                        topic,
                        value=record.data,
                        key=record_key(self._config, record),
                        headers=record_headers(record),  # type: ignore[arg-type]  # bytes values are fine
                        timestamp=record.event_time_ms,
                        on_delivery=callback,
                    )
                    break
                except BufferError:  # librdkafka's queue is full: let it send, then go on
                    if time.monotonic() >= deadline:
                        results[index] = RecordResult(Outcome.RETRY, "local queue full", unreachable=True)
                        break
                    producer.poll(0.05)
                except KafkaException as exc:
                    failures[index] = exc.args[0]
                    break
        # In slices: the link hears of the first ack (and of an outage, from error_cb) as it happens,
        # and close() can stop the wait once the brokers are known to be unreachable.
        missing: bool | None = None  # asked of the brokers at most once a batch

        def topic_is_missing() -> bool:
            nonlocal missing
            if missing is None:  # only when the brokers answer: a timeout in an outage is just that
                missing = self._client_error is None and self._topic_missing(producer)
            return missing

        while True:
            unacked = producer.flush(min(PROBE_AFTER, max(0.0, deadline - time.monotonic())))
            self._check_all_down(deadline)
            if not unacked or self._link.abandoned.is_set() or time.monotonic() >= deadline:
                break
            if not acked and deadline - time.monotonic() <= _TOPIC_CHECK_TIMEOUT:
                # Nothing acked yet: ask now whether the topic exists, within the batch's last slice,
                # so that a silent broker is reported when the batch's time is up, not a check later.
                topic_is_missing()
        if self._fatal is not None:
            logger.warning("making a new Kafka producer (%s)", self._fatal)
            self._discard_producer()
        if any(result is not None and result.outcome is Outcome.DELIVERED for result in results):
            self._client_error = self._client_error_code = None  # the broker answers again
        for index, error in failures.items():
            text = f"KafkaError {error.name()}: {error.str()}"
            if error.code() in _TOO_LARGE:
                results[index] = too_large(text, records[index], self._limit.get(), topic, KafkaException(error))
            elif error.code() == KafkaError._MSG_TIMED_OUT and topic_is_missing():
                results[index] = topic_missing(self._config, text)
            else:
                result = classify(error, self._config)
                if result.unreachable:  # name the brokers, and what librdkafka said about them
                    why = f" ({self._client_error})" if self._client_error else ""
                    result = RecordResult(Outcome.RETRY, f"{', '.join(self._config.brokers)}: {text}{why}", True)
                results[index] = result
        unacked = any(result is None for result in results)
        if unacked and topic_is_missing():
            final = [result or topic_missing(self._config, f"no ack within {timeout:g}s") for result in results]
        else:
            final = [result or self._no_ack(timeout) for result in results]
        settled = True
        if unacked:
            # What is reported unacked is sent again with a later batch: librdkafka must not keep its copy
            # queued (waiting for a topic or a broker), or both are delivered once Kafka takes them. What
            # is in flight already cannot be recalled (at-least-once).
            producer.purge(in_queue=True, in_flight=False, blocking=False)
            producer.poll(0)
        return final

    def _check_all_down(self, deadline: float) -> None:
        """After librdkafka said all brokers are down: probe them (at most as often as the schedule
        allows) and tell the link when none takes a connection."""
        if self._all_down is None or not self._probes.due():
            return
        why, self._all_down = self._all_down, None
        self._probes.probed()
        if probe_brokers(self._config, min(PROBE_TIMEOUT, max(0.1, deadline - time.monotonic()))) is not None:
            self._link.unreachable(why)

    def _no_ack(self, timeout: float) -> RecordResult:
        brokers = ", ".join(self._config.brokers)
        reason = f"no ack from {brokers} within {timeout:g}s"
        if self._client_error:
            reason += f" ({self._client_error})"
        if self._client_error_code in _LOGIN_REFUSED:
            return login_refused(reason)
        return RecordResult(Outcome.RETRY, reason, unreachable=True)

    def _topic_missing(self, producer: Producer) -> bool:
        """After a delivery timed out with the brokers up: is the topic unknown to them?"""
        try:
            # Short: brokers that answer do so at once, and a silent one must not delay the outage report.
            metadata = producer.list_topics(self._config.topic, timeout=_TOPIC_CHECK_TIMEOUT)
        except KafkaException:
            return False
        topic = metadata.topics.get(self._config.topic)
        return topic is not None and topic.error is not None and topic.error.code() in _TOPIC_MISSING

    def _read_size_limit(self) -> int:
        settings = {key: value for key, value in producer_settings(self._config).items() if key not in _PRODUCER_ONLY}
        admin = AdminClient(settings)  # held until the answer is in: a dropped handle cancels it
        (future,) = admin.describe_configs([ConfigResource("topic", self._config.topic)]).values()
        return int(future.result(timeout=self._config.write_timeout)["max.message.bytes"].value)

    def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.purge()  # what is queued is still on disk
            producer.flush(0)

    def close(self, timeout: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(timeout)
            producer.purge()
            producer.flush(0)
