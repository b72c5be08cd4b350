"""What the flusher needs from a Kafka client, and how the record is laid out (key, headers).

A transport delivers one claimed batch and reports, per record, whether the broker acked
it, whether it may be retried, or whether it failed for good. The kafka-python transport
(``kafka_transport.py``) is the default; confluent-kafka (``confluent_transport.py``) is the
fast one, for high-volume batch jobs.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from .. import _fork
from ..config import Config
from ..records import CONSTANT_HEADERS, EVENT_HEADERS, ClaimedRecord
from ..records import record_size as event_record_size

logger = logging.getLogger(__name__)

__all__ = [
    "Link",
    "Outcome",
    "ProbeSchedule",
    "RecordResult",
    "TopicSizeLimit",
    "Transport",
    "record_headers",
    "record_key",
]

class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # the broker was away or slow: try again later, forever
    #: The deployment refuses every record (topic denied by an ACL, topic missing, bad
    #: credentials): not the record's fault. Retried forever like RETRY, reported at ERROR.
    BLOCKED = "blocked"
    FAILED = "failed"  # this record cannot be delivered as it is (too large, bad timestamp...)


@dataclass(frozen=True, slots=True)
class RecordResult:
    outcome: Outcome
    error: str | None = None
    #: True when the failure says the brokers cannot be reached (for stats and logging).
    unreachable: bool = False
    #: True when the broker refused the batch the record was in for a reason that may be one
    #: record's own (too large, a timestamp out of range): the flusher sends such records again
    #: in smaller batches, so that only the record at fault fails.
    batch_refused: bool = False
    #: The exception the client library reported, when there is one (a dead letter's
    #: ``SendError`` chains it as ``__cause__``).
    cause: BaseException | None = field(default=None, compare=False)


DELIVERED = RecordResult(Outcome.DELIVERED)

#: How long a transport waits for acks before it checks whether the brokers still take connections.
PROBE_AFTER = 0.5
#: While acks stay late, the checks space out (doubling from PROBE_AFTER) up to this interval.
PROBE_MAX_INTERVAL = 8.0
#: A broker that takes this long to accept a TCP connection counts as not answering; one probe of
#: every broker (name lookups included) is over within it.
PROBE_TIMEOUT = 1.0


class Link:
    """What a transport tells its flusher about the brokers the moment it knows, mid-batch.

    A batch can wait ``write_timeout`` for its acks; ``stats()`` and the outage warning must not
    wait that long to learn that the brokers refuse connections, nor the recovery for the last
    ack of a batch. The flusher passes one to the transport it creates; calls come from the
    flusher thread. ``abandoned`` is set by ``close()`` once the brokers are known to be
    unreachable: a transport stops waiting for acks that are not coming (the events stay on disk).
    Once ``close()``d the link says nothing more: a transport closed on the caller's thread
    (librdkafka serves its callbacks in that ``flush``) cannot reach the flusher's state.
    """

    def __init__(self, changed: Callable[[bool, str | None], None] | None = None) -> None:
        self._changed = changed
        self.abandoned = threading.Event()
        self._closed = threading.Event()

    def close(self) -> None:
        """From now on, ``reachable`` and ``unreachable`` do nothing."""
        self._closed.set()

    def reachable(self) -> None:
        """A broker acked a record."""
        if self._changed is not None and not self._closed.is_set():
            self._changed(True, None)

    def unreachable(self, reason: str) -> None:
        """No broker can be reached, for ``reason`` (which names the broker addresses)."""
        if self._changed is not None and not self._closed.is_set():
            self._changed(False, reason)


def host_port(broker: str) -> tuple[str, int]:
    """A ``brokers`` entry as the (host, port) a socket connects to (IPv6 brackets removed)."""
    host, _, port = broker.rpartition(":") if ":" in broker else (broker, "", "9092")
    return host.strip("[]"), int(port)


#: Brokers whose last probe has not ended yet (a name lookup can hang past any timeout): not probed again meanwhile.
_PROBING: set[str] = set()
_PROBING_LOCK = threading.Lock()


def _forget_probes_in_child() -> None:
    global _PROBING_LOCK
    _PROBING_LOCK = threading.Lock()  # a fork may have been taken while a probe thread held it
    _PROBING.clear()  # the threads of those probes do not exist in the child


_fork.after_fork_in_child(_forget_probes_in_child)


def probe_brokers(config: Config, timeout: float = PROBE_TIMEOUT) -> str | None:
    """``None`` when some broker accepts a TCP connection; otherwise why none does, broker by broker.

    The cheap check a transport makes before a producer bootstraps (kafka-python's blocks for
    its whole bootstrap timeout when nobody answers) and while acks are late: a refused or
    unroutable connection is known in milliseconds. A broker that accepts and then says nothing
    passes; that outage shows when the batch's ``write_timeout`` runs out.

    Every broker is probed at once, each on a short-lived thread (``getaddrinfo`` takes no
    timeout), and the answer comes within ``timeout`` however many brokers there are and
    however slow their name lookups are: a probe still running then counts as no answer.
    """
    limit = min(timeout, config.write_timeout)
    answers: queue.SimpleQueue[tuple[str, str | None]] = queue.SimpleQueue()
    reasons: dict[str, str] = {}

    def probe(broker: str) -> None:
        try:
            try:
                socket.create_connection(host_port(broker), timeout=limit).close()
                answers.put((broker, None))
            except TimeoutError:
                answers.put((broker, f"{broker}: no answer to a TCP connection within {limit:g}s"))
            except OSError as exc:
                answers.put((broker, f"{broker}: {exc.strerror or exc}"))
        finally:
            with _PROBING_LOCK:
                _PROBING.discard(broker)

    started = 0
    for broker in dict.fromkeys(config.brokers):
        with _PROBING_LOCK:
            if broker in _PROBING:
                reasons[broker] = f"{broker}: its last probe (name lookup or TCP connection) has not ended"
                continue
            _PROBING.add(broker)
        # A daemon, never joined: it ends within `limit` once connecting, but a name lookup may hang.
        threading.Thread(target=probe, args=(broker,), name="sentinel-durable-probe", daemon=True).start()
        started += 1
    deadline = time.monotonic() + limit
    for _ in range(started):
        try:
            broker, reason = answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if reason is None:
            return None
        reasons[broker] = reason
    return "; ".join(
        reasons.get(broker, f"{broker}: no answer (name lookup or TCP connection) within {limit:g}s")
        for broker in dict.fromkeys(config.brokers)
    )


class ProbeSchedule:
    """When a transport waiting for late acks probes the brokers again: at most once per
    ``PROBE_AFTER`` at first, then twice as far apart each time up to ``PROBE_MAX_INTERVAL``
    (brokers that are merely slow get one extra TCP connection now and then, not two a second),
    and from the start again after the next ack. Used from the flusher thread only."""

    def __init__(self) -> None:
        self._interval = PROBE_AFTER
        self._next = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def probed(self) -> None:
        self._next = time.monotonic() + self._interval
        self._interval = min(self._interval * 2, PROBE_MAX_INTERVAL)

    def acked(self) -> None:
        self._interval = PROBE_AFTER
        self._next = 0.0


class Transport(Protocol):
    """Delivers claimed batches to Kafka. Used from the flusher thread only."""

    def deliver(self, records: Sequence[ClaimedRecord], timeout: float) -> list[RecordResult]:
        """Produce ``records`` and wait up to ``timeout`` seconds for their acks; one result per record."""
        ...

    def close(self, timeout: float) -> None:
        """Release connections within ``timeout`` seconds; undelivered records are not waited for."""
        ...


def record_key(config: Config, record: ClaimedRecord) -> bytes | None:
    if config.partition_key == "service_name":
        return record.service_name.encode()
    if config.partition_key == "event_id":
        return record.event_id.encode()
    return None


assert EVENT_HEADERS == ("event_id", "service_name", "model")  # record_headers spells them out


def record_headers(record: ClaimedRecord) -> list[tuple[str, bytes]]:
    """The record's headers: the event's own (``records.EVENT_HEADERS``), then the constant ones.

    Spelt out rather than looped over: it runs once per record on the flusher's thread."""
    return [
        ("event_id", record.event_id.encode()),
        ("service_name", record.service_name.encode()),
        ("model", record.model.encode()),
        *CONSTANT_HEADERS,
    ]


def principal(config: Config) -> str:
    """Who the brokers see this client as, in the words of an operator's ACL."""
    if config.sasl_mechanism is not None:
        return f"User:{config.sasl_username}"
    if config.ssl_certfile is not None:
        return "User:<the client certificate's subject>"
    return "User:ANONYMOUS"


def topic_denied(config: Config, error: str) -> RecordResult:
    return RecordResult(
        Outcome.BLOCKED,
        f"{error}: Kafka refuses {principal(config)} writes to topic {config.topic!r}"
        " (an ACL must allow WRITE and DESCRIBE on it)",
    )


def topic_missing(config: Config, error: str) -> RecordResult:
    return RecordResult(
        Outcome.BLOCKED,
        f"{error}: topic {config.topic!r} does not exist and the brokers do not create it"
        " (auto.create.topics.enable=false): create it",
    )


def login_refused(error: str) -> RecordResult:
    return RecordResult(Outcome.BLOCKED, f"{error}: the brokers refused the login (check the SASL credentials)")


def too_large(
    error: str, record: ClaimedRecord, limit: int | None, topic: str, cause: BaseException | None = None
) -> RecordResult:
    size = record_size(record)
    allowed = f"max.message.bytes={limit}" if limit is not None else "its max.message.bytes (could not be read)"
    return RecordResult(
        Outcome.FAILED, f"{error}: the record is about {size} bytes, more than topic {topic!r} accepts ({allowed})",
        batch_refused=True, cause=cause,
    )  # fmt: skip


class TopicSizeLimit:
    """The topic's ``max.message.bytes`` as each transport reads it (a DescribeConfigs request),
    kept for ``ttl`` seconds: read only when a record is refused as too large, or once per
    transport; ``None`` while it is unknown or could not be read."""

    def __init__(self, config: Config, read: Callable[[], int], ttl: float = 60.0) -> None:
        self._config = config
        self._read = read
        self._ttl = ttl
        self._read_at: float | None = None
        self.value: int | None = None

    @property
    def ever_read(self) -> bool:
        return self._read_at is not None

    def get(self) -> int | None:
        now = time.monotonic()
        if self._read_at is None or now - self._read_at >= self._ttl:
            self._read_at = now
            try:
                self.value = self._read()
            except Exception as exc:  # no DESCRIBE_CONFIGS on the topic, a broker away...
                logger.debug("could not read max.message.bytes of %s: %s", self._config.topic, exc)
                self.value = None
        return self.value


def record_size(record: ClaimedRecord) -> int:
    """Value, key, headers and framing: what the record takes in a batch, before compression, at
    most (the estimate ``max_message_bytes`` is checked against at send time)."""
    return event_record_size(len(record.data), record.service_name, record.model)


def deliver_isolating(transport: Transport, records: Sequence[ClaimedRecord], timeout: float) -> list[RecordResult]:
    """``transport.deliver``, with the records of a refused batch delivered again in halves.

    A broker refuses a whole produce batch for one record's fault (over the topic's
    max.message.bytes, a timestamp out of its window), and librdkafka does not split it: the
    refused records go again in halves until each failure left is one record's own, so the
    records beside it are not blamed.
    """
    results = transport.deliver(records, timeout)
    refused = [index for index, result in enumerate(results) if result.batch_refused]
    if len(refused) > 1:
        half = len(refused) // 2
        for part in (refused[:half], refused[half:]):
            again = deliver_isolating(transport, [records[i] for i in part], timeout)
            for index, result in zip(part, again, strict=True):
                results[index] = result
    return results
