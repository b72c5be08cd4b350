"""The records the spool and the transports exchange: an event ready to spool, and one claimed for delivery.

Both carry the event's wire JSON (``data``, exactly the Kafka record value) and the fields the
transport puts in the record's key and headers, so a transport never parses the JSON. Their
reprs show ``data`` as its size: it holds the prompt, the response and the metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .event import TelemetryEvent, check_record_size

__all__ = ["ClaimedRecord", "SpoolRecord"]


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
