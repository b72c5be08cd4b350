"""The records the spool and the transports exchange: an event ready to spool, and one claimed for delivery.

Both carry the event's wire JSON (``data``, exactly the Kafka record value) and the fields the
transport puts in the record's key and headers, so a transport never parses the JSON. Their
reprs show ``data`` as its size: it holds the prompt, the response and the metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ._version import __version__
from .errors import ValidationError
from .event import TelemetryEvent

__all__ = ["CONSTANT_HEADERS", "EVENT_HEADERS", "ClaimedRecord", "SpoolRecord", "check_record_size", "record_size"]


def repr_sized(record: object, data: bytes, names: Sequence[str]) -> str:
    """A record's repr with ``data`` (the event's wire JSON: its prompt, response and metadata) as its size."""
    shown = "".join(f"{name}={getattr(record, name)!r}, " for name in names)
    return f"{type(record).__name__}({shown}data=<{len(data)} bytes>)"


class SpoolRecord(NamedTuple):
    """An event ready to be spooled: its wire JSON and the fields the transport needs."""

    data: bytes
    event_id: str
    service_name: str
    model: str
    event_time_ms: int

    def __repr__(self) -> str:
        return repr_sized(self, self.data, self._fields[1:])

    @classmethod
    def from_event(cls, event: TelemetryEvent, max_message_bytes: int | None = None) -> SpoolRecord:
        """The record of ``event``; ``ValidationError`` when it would be larger than
        ``max_message_bytes`` (Kafka would refuse it: it is never spooled)."""
        data = event.to_json()
        if max_message_bytes is not None:
            check_record_size(data, event, max_message_bytes)
        return cls(
            data=data,
            event_id=event.event_id,
            service_name=event.service_name,
            model=event.model,
            event_time_ms=int(event.timestamp.timestamp() * 1000),
        )


class ClaimedRecord(NamedTuple):
    """A spooled event handed to the flusher."""

    row_id: int
    data: bytes
    event_id: str
    service_name: str
    model: str
    event_time_ms: int
    attempts: int
    spooled_at: float

    def __repr__(self) -> str:
        return repr_sized(self, self.data, [name for name in self._fields if name != "data"])


# --- the record's size ------------------------------------------------------------

#: Framing of one record alone in a Kafka v2 record batch, at its largest: the batch header
#: (61 bytes), then the record's length, attributes, timestamp delta, offset delta, key length,
#: value length and header count, each varint at its widest.
_RECORD_FRAMING = 61 + 5 + 1 + 10 + 5 + 5 + 5 + 5
#: The headers of every record (``transports.base.record_headers`` sends these, and the size estimate
#: counts them): first those whose value is the event's field of that name, then those whose
#: value is constant. Each header costs its name, its value and two varint lengths (at most 5
#: bytes each).
EVENT_HEADERS = ("event_id", "service_name", "model")
CONSTANT_HEADERS: tuple[tuple[str, bytes], ...] = (
    ("content-type", b"application/json"), ("sdk.name", b"sentinel-durable"), ("sdk.version", __version__.encode()),
)  # fmt: skip
_HEADERS_FIXED = sum(len(name) + 10 for name in EVENT_HEADERS) + sum(
    len(name) + 10 + len(value) for name, value in CONSTANT_HEADERS
)
_UUID_LENGTH = 36


def record_size(value_bytes: int, service_name: str, model: str) -> int:
    """A conservative estimate of the bytes one event takes as a Kafka record, uncompressed:
    the value, the longest key ``partition_key`` can choose (``service_name`` or ``event_id``),
    the headers and the batch framing. Kafka's producers check ``max.request.size`` (and the
    broker ``max.message.bytes``) against about this; it is never below what they count."""
    service = len(service_name.encode("utf-8", "surrogatepass"))
    key = max(service, _UUID_LENGTH)
    headers = _HEADERS_FIXED + _UUID_LENGTH + service + len(model.encode("utf-8", "surrogatepass"))
    return _RECORD_FRAMING + value_bytes + key + headers


def check_record_size(value: bytes, event: TelemetryEvent, max_message_bytes: int) -> None:
    """Raise ``ValidationError`` when ``event`` (serialized as ``value``) makes a record larger
    than ``max_message_bytes``: Kafka would refuse it, so it is never spooled."""
    size = record_size(len(value), event.service_name, event.model)
    if size > max_message_bytes:
        raise ValidationError(
            "event",
            f"makes a Kafka record of {size} bytes (value {len(value)} bytes, plus key and headers),"
            f" over max_message_bytes={max_message_bytes}",
            size,
            show_value=False,
        )
