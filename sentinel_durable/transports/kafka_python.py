"""The default transport: kafka-python's ``KafkaProducer``.

Created lazily on the flusher thread (its constructor can block for its whole bootstrap
timeout when no broker answers). A producer that reaches a state it never leaves (the
idempotent producer after a broker restart: UnknownProducerId, fatal InitProducerId
errors) is thrown away and a new one made on the next batch.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

with warnings.catch_warnings():
    # kafka-python 3.0 loads its protocol schemas with a deprecated importlib.resources API;
    # under -W error (or a test suite's filterwarnings=error) that would stop every delivery.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka import errors as kafka_errors
    from kafka.admin import ConfigResource, ConfigResourceType

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
    host_port,
    login_refused,
    probe_brokers,
    record_headers,
    record_key,
    too_large,
    topic_denied,
    topic_missing,
)
from .kafka_python_logs import CLIENT_ID, LOGIN_FAILURES, OURS, REDACT, filter_kafka_loggers

logger = logging.getLogger(__name__)


#: Failures that belong to one record: retrying it can never succeed, so it is dead-lettered
#: after max_retries attempts while the records behind it go on.
_RECORD_FAILURES: tuple[type[BaseException], ...] = (
    kafka_errors.CorruptRecordError,
    kafka_errors.InvalidTimestampError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.PolicyViolationError,
)
_TOO_LARGE: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordListTooLargeError,
)
#: Failures that belong to the deployment (an ACL, a topic name the brokers refuse): every record
#: would fail the same way, so none is dead-lettered; retried until an operator fixes it.
_TOPIC_REFUSED: tuple[type[BaseException], ...] = (
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.InvalidTopicError,
)
_LOGIN_REFUSED: tuple[type[BaseException], ...] = (kafka_errors.SaslAuthenticationFailedError,)
#: Failures after which this producer is not to be trusted again.
_PRODUCER_FAILURES: tuple[type[BaseException], ...] = (
    kafka_errors.UnknownProducerIdError,
    kafka_errors.OutOfOrderSequenceNumberError,
    kafka_errors.InvalidProducerEpochError,
    kafka_errors.IllegalStateError,
    kafka_errors.KafkaConfigurationError,
)
#: Failures that mean no broker could be reached.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    kafka_errors.KafkaConnectionError,
    kafka_errors.NodeNotReadyError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.MetadataEmptyBrokerList,
    ConnectionError,
    TimeoutError,
)

_ACKS = {-1: "all", 0: 0, 1: 1}
#: Produce requests may hold this many bytes per partition batch (kafka-python's default is 16 KiB).
_BATCH_BYTES = 1 << 20


def producer_options(config: Config) -> dict[str, Any]:
    """KafkaProducer settings for a configuration (secrets included: never log this)."""
    write_ms = int(config.write_timeout * 1000)
    read_ms = int(config.read_timeout * 1000)
    options: dict[str, Any] = {
        "bootstrap_servers": list(config.brokers),
        "client_id": CLIENT_ID,
        "acks": _ACKS[config.require_acks],
        "compression_type": None if config.compression == "none" else config.compression,
        "linger_ms": int(config.batch_timeout * 1000),
        # A record, and a batch, as large as max_message_bytes (what the send-time check lets
        # through); TopicSizeLimit lowers both to the topic's max.message.bytes once it is read.
        "max_request_size": config.max_message_bytes,
        "batch_size": min(_BATCH_BYTES, config.max_message_bytes),
        # We retry ourselves (forever, with our backoff); the idempotent producer can wedge
        # itself after a broker restart, and duplicates carry their event_id anyway.
        "enable_idempotence": False,
        "retries": 0,
        "max_in_flight_requests_per_connection": 5,
        "request_timeout_ms": read_ms,  # how long one broker response may take
        "delivery_timeout_ms": max(write_ms, read_ms) + int(config.batch_timeout * 1000) + 1,
        "max_block_ms": write_ms,
        "bootstrap_timeout_ms": write_ms,
        "reconnect_backoff_ms": int(config.retry_backoff * 1000),
        "reconnect_backoff_max_ms": int(config.max_retry_backoff * 1000),
        "security_protocol": config.security_protocol,
    }
    if config.sasl_mechanism is not None:
        options["sasl_mechanism"] = config.sasl_mechanism
        options["sasl_plain_username"] = config.sasl_username
        if config.sasl_password is not None:
            options["sasl_plain_password"] = config.sasl_password.get_secret_value()
            REDACT.add(options["sasl_plain_password"])
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = getattr(config, name)
        if path is not None:
            options[name] = str(path)
    if config.ssl_password is not None:
        options["ssl_password"] = config.ssl_password.get_secret_value()
        REDACT.add(options["ssl_password"])
    return options


def _describe(error: BaseException) -> str:
    name, text = type(error).__name__, str(error)
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"  # kafka-python's errors often name themselves


def tls_diagnosis(config: Config, timeout: float = 2.0) -> str | None:
    """Why a TLS handshake with the brokers fails, if it does (kafka-python only says that it
    could not bootstrap): the certificate check, a wrong host name, a missing client certificate."""
    try:
        context = ssl.create_default_context(cafile=str(config.ssl_cafile) if config.ssl_cafile else None)
        if config.ssl_certfile is not None:
            password = config.ssl_password.get_secret_value() if config.ssl_password is not None else None
            context.load_cert_chain(str(config.ssl_certfile), str(config.ssl_keyfile or config.ssl_certfile), password)
    except (OSError, ssl.SSLError) as exc:
        return f"TLS settings: {exc}"
    for broker in config.brokers:
        host, port = host_port(broker)
        try:
            with (
                socket.create_connection((host, port), timeout=timeout) as raw,
                context.wrap_socket(raw, server_hostname=host) as tls,
            ):
                tls.do_handshake()
                return None  # this broker's TLS is fine: the failure is elsewhere
        except ssl.SSLError as exc:
            return f"TLS handshake with {broker} failed: {exc}"
        except OSError:
            continue  # unreachable: nothing to say about TLS
    return None


def classify(error: BaseException, config: Config) -> RecordResult:
    """Map a kafka-python failure to what the flusher should do with the record."""
    if isinstance(error, _TOPIC_REFUSED):
        return topic_denied(config, _describe(error))
    if isinstance(error, _LOGIN_REFUSED):
        return login_refused(_describe(error))
    if isinstance(error, _RECORD_FAILURES):
        return RecordResult(Outcome.FAILED, _describe(error), cause=error)
    return RecordResult(Outcome.RETRY, _describe(error), unreachable=isinstance(error, _UNREACHABLE), cause=error)


class KafkaPythonTransport:
    def __init__(self, config: Config, link: Link | None = None) -> None:
        self._config = config
        self._link = link or Link()
        self._producer: Any = None
        self._limit = TopicSizeLimit(config, self._read_size_limit)
        self._outage: str | None = None  # why the brokers cannot be reached, as a probe found
        self._probes = ProbeSchedule()  # while acks are late
        OURS.transport_started(config.client_library_logs)
        self._closed = False

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            producer = self._new_producer()
            if not self._limit.ever_read:
                # The brokers answered: learn the topic's limit once (one DescribeConfigs). When it is
                # below our request and batch sizes, size the producer to it, so that a record too
                # large fails at send() and kafka-python never splits a batch the broker refused (its
                # split re-sent records that were already appended, many times over).
                limit = self._limit.get()
                if limit is not None and limit < self._config.max_message_bytes:
                    _close_producer(producer, 0)
                    producer = self._new_producer()
            self._producer = producer
        return self._producer

    def _new_producer(self) -> Any:
        filter_kafka_loggers()
        options = producer_options(self._config)
        limit = self._limit.value
        if limit is not None:
            options["max_request_size"] = min(limit, options["max_request_size"])
            options["batch_size"] = min(options["batch_size"], limit)
        producer = KafkaProducer(**options)
        # kafka-python closes each producer from an atexit hook of its own (1 s timeout).
        # Registered after ours, it would run first and cut the client's final drain
        # short; the client closes its producer itself.
        unregister = getattr(producer, "_unregister_cleanup", None)
        if callable(unregister):
            unregister()
        return producer

    def deliver(self, records: Sequence[ClaimedRecord], timeout: float) -> list[RecordResult]:
        OURS.want(self._config.client_library_logs)
        started = time.monotonic()
        deadline = started + timeout
        if self._producer is None:
            # kafka-python's bootstrap blocks for its whole timeout when nobody answers, logging
            # every attempt: learn in milliseconds that the brokers refuse connections instead.
            outage = probe_brokers(self._config)
            if outage is not None:
                self._outage = outage
                self._link.unreachable(outage)
                return [RecordResult(Outcome.RETRY, outage, unreachable=True)] * len(records)
        try:
            producer = self._ensure_producer()
        except Exception as exc:  # no broker answered the bootstrap, bad TLS files, a refused login...
            result = classify(exc, self._config)
            if isinstance(exc, kafka_errors.KafkaTimeoutError):  # a connection, but no Kafka answer on it
                silent = f"{', '.join(self._config.brokers)}: no Kafka answer within {timeout:g}s ({_describe(exc)})"
                result = RecordResult(Outcome.RETRY, silent, unreachable=True)
            refused = LOGIN_FAILURES.since(started) if self._config.sasl_mechanism is not None else None
            if refused is not None:
                return [login_refused(f"{_describe(exc)}; {_describe(refused)}")] * len(records)
            reason = tls_diagnosis(self._config) if self._config.security_protocol.endswith("SSL") else None
            if result.outcome is Outcome.FAILED or reason:
                error = f"{result.error}; {reason}" if reason else result.error
                result = RecordResult(Outcome.RETRY, error, unreachable=result.unreachable)
            return [result] * len(records)
        results: list[RecordResult | None] = [None] * len(records)
        futures: list[tuple[int, Any]] = []
        topic = self._config.topic
        for index, record in enumerate(records):
            try:
                future = producer.send(
                    topic,
                    value=record.data,
                    key=record_key(self._config, record),
                    headers=record_headers(record),
                    timestamp_ms=record.event_time_ms,
                )
            except Exception as exc:
                result = self._classify_send_failure(exc, producer, record)
                results[index] = result
                if result.outcome in (Outcome.RETRY, Outcome.BLOCKED):
                    # Metadata or buffer space is not coming (send() already waited for it):
                    # the rest of the batch would wait the same way. Retry them all later.
                    for rest in range(index + 1, len(records)):
                        results[rest] = RecordResult(Outcome.RETRY, result.error, result.unreachable)
                    break
                continue
            futures.append((index, future))
        if futures:
            self._await_acks(producer, [future for _, future in futures], deadline)
        resize = False
        no_ack = f"no ack from {', '.join(self._config.brokers)} within {timeout:g}s" + (
            f" ({self._outage})" if self._outage else ""
        )
        for index, future in futures:
            if not future.is_done:
                results[index] = RecordResult(Outcome.RETRY, no_ack, unreachable=True)
            elif future.succeeded():
                results[index] = DELIVERED
            else:
                error = future.exception
                results[index] = self._classify_send_failure(error, producer, records[index])
                if isinstance(error, _TOO_LARGE) and self._limit.value is not None:
                    resize = True  # the broker refused a batch: the next producer respects the topic's limit
                if isinstance(error, _PRODUCER_FAILURES):
                    self._discard_producer(f"producer failed: {_describe(error)}")
        if resize and self._producer is not None:
            self._discard_producer("the topic's max.message.bytes is below the producer's request size")
        return [result or RecordResult(Outcome.RETRY, "not sent") for result in results]

    def _await_acks(self, producer: Any, futures: list[Any], deadline: float) -> None:
        """Wait for the acks until ``deadline``, telling the link at once of the first ack, and,
        while acks are late, whether the brokers still take connections (a cheap TCP probe)."""
        acked = False
        while not self._link.abandoned.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with _suppress_and_log("flush"):
                producer.flush(timeout=min(PROBE_AFTER, left))
            if not acked and any(future.is_done and future.succeeded() for future in futures):
                acked = True
                self._outage = None
                self._probes.acked()
                self._link.reachable()
            if all(future.is_done for future in futures):
                return
            if not acked and time.monotonic() < deadline and self._probes.due():
                self._probes.probed()
                outage = probe_brokers(self._config, min(PROBE_TIMEOUT, max(0.1, deadline - time.monotonic())))
                if outage is not None:
                    self._outage = outage
                    self._link.unreachable(outage)

    def _classify_send_failure(self, error: BaseException, producer: Any, record: ClaimedRecord) -> RecordResult:
        if isinstance(error, _TOO_LARGE):
            return too_large(_describe(error), record, self._limit.get(), self._config.topic, cause=error)
        if isinstance(error, kafka_errors.KafkaTimeoutError) and self._topic_missing(producer):
            return topic_missing(self._config, _describe(error))
        return classify(error, self._config)

    def _topic_missing(self, producer: Any) -> bool:
        """After a metadata wait timed out: the brokers answered, and the topic is not among theirs."""
        metadata = getattr(producer, "_metadata", None)  # kafka-python's ClusterMetadata
        try:
            return bool(metadata is not None and metadata.brokers() and self._config.topic not in metadata.topics())
        except Exception:
            return False

    def _read_size_limit(self) -> int:
        options = producer_options(self._config).items()
        admin = KafkaAdminClient(**{key: value for key, value in options if key in KafkaAdminClient.DEFAULT_CONFIG})
        try:
            resource = ConfigResource(ConfigResourceType.TOPIC, self._config.topic, configs=["max.message.bytes"])
            described = admin.describe_configs([resource])
            return int(described["topic"][self._config.topic]["max.message.bytes"]["value"])
        finally:
            admin.close()

    def _discard_producer(self, reason: str) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            logger.warning("making a new Kafka producer (%s)", reason)
            _close_producer(producer, 0)

    def close(self, timeout: float) -> None:
        if not self._closed:
            self._closed = True
            OURS.transport_closed(self._config.client_library_logs)
        producer, self._producer = self._producer, None
        if producer is not None:
            # close(timeout) raises when records are still pending; they are on disk anyway.
            OURS.want(self._config.client_library_logs)  # close() may run on the caller's thread
            try:
                _close_producer(producer, timeout)
            finally:
                OURS.want(None)


def _close_producer(producer: Any, timeout: float) -> None:
    """Close a producer within ``timeout``, records pending or not (they are on disk anyway).

    kafka-python's ``close()`` raises from its ``flush()`` when records are still pending and then
    never stops the producer's threads; at exit its ``__del__`` tries again and prints the
    traceback. Force-close what it left running instead.
    """
    try:
        producer.close(timeout=timeout)
    except Exception as exc:
        logger.debug("kafka producer close failed (%s): forcing it", _describe(exc))
        sender = getattr(producer, "_sender", None)
        with contextlib.suppress(Exception):
            if sender is not None:
                sender.force_close()
            producer._closed = True  # so that its __del__ does not try again at exit


@contextlib.contextmanager
def _suppress_and_log(what: str) -> Iterator[None]:
    """Suppress a kafka-python failure in a housekeeping call, logging it at DEBUG."""
    try:
        yield
    except Exception as exc:
        logger.debug("kafka producer %s failed: %s", what, _describe(exc))
