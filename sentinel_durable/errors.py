"""Every exception the SDK raises.

The hierarchy, drawn as a tree (builtin bases in brackets)::

    SentinelError
    ├── ValidationError        [ValueError]       an event breaks a rule of the wire format; nothing spooled
    ├── ConfigError            [ValueError]       a bad option or SENTINEL_* environment value
    ├── SendError                                 a send that waits for delivery failed for good
    ├── BrokerConnectionError  [ConnectionError]  no broker reachable
    ├── DeliveryTimeoutError   [TimeoutError]     a wait for delivery ran past its timeout
    │   └── BrokerUnreachableError (also a BrokerConnectionError)  ... while no broker was reachable
    ├── SpoolFullError                            the spool cannot take the event now (size bound, disk, writer behind)
    ├── ClientClosedError                         a call on a closed client
    │   └── SpoolClosed                           ... seen from the spool (the client closed it)
    ├── CannotDecrypt                             a sealed event body cannot be opened (no key, another key)
    └── SpoolFileError                            one spool file cannot be used (the command line reports these)
        ├── SpoolFileBusy                         ... a live process owns it
        ├── SpoolFileCorrupt                      ... it fails to open or its integrity check (quarantined)
        ├── SpoolFileTooNew                       ... a newer sentinel-durable wrote it (left alone)
        └── SpoolFileUnavailable                  ... for now: locked by a tool, an I/O error, a full disk

``track``, ``send`` and ``send_batch`` raise ``ValidationError``, ``SpoolFullError`` and
``ClientClosedError`` only; ``send(wait=True)`` adds ``SendError``, ``DeliveryTimeoutError`` (and
``BrokerUnreachableError``). A ``SpoolFileError`` or ``CannotDecrypt`` reaches the caller only
from the command line's tools and ``sentinel_durable.spool``'s readers; the client handles them
(quarantine, retry later, dead letter).

Each class carries the context a handler needs as attributes, and the chained
``__cause__`` where a lower-level exception started it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "BrokerConnectionError",
    "BrokerUnreachableError",
    "CannotDecrypt",
    "ClientClosedError",
    "ConfigError",
    "DeliveryTimeoutError",
    "SendError",
    "SentinelError",
    "SpoolClosed",
    "SpoolFileBusy",
    "SpoolFileCorrupt",
    "SpoolFileError",
    "SpoolFileTooNew",
    "SpoolFileUnavailable",
    "SpoolFullError",
    "ValidationError",
]

#: Longest ``repr`` of an offending value that goes into an error message.
_MAX_VALUE_REPR = 80


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a user's object whose __repr__ raises must not hide our error
        text = f"<{type(value).__name__} object>"
    if len(text) > _MAX_VALUE_REPR:
        text = text[: _MAX_VALUE_REPR - 3] + "..."
    return text


def _restore(cls: type[SentinelError], args: tuple[Any, ...], state: dict[str, Any]) -> SentinelError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class SentinelError(Exception):
    """Base class of every error raised by sentinel_durable."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The subclasses take keyword context, so the default (cls(*args)) cannot
        # rebuild them; restore message and attributes directly (pickling across
        # processes, e.g. multiprocessing workers).
        return (_restore, (type(self), self.args, self.__dict__))


class ValidationError(SentinelError, ValueError):
    """An event breaks a rule of the wire format; nothing was spooled.

    ``field`` is the dotted path of the offending field (``"prompt.tokens"``,
    ``"metadata.region"``), ``message`` says which rule it broke and ``value`` is
    the value given (``None`` when the field is missing). The message names the
    field, the rule and the value's type and size; it shows the value itself only for
    fields that never carry user content (names, ids, numbers). Prompt, response,
    metadata and error text never appear in it (it may be sensitive); the value stays
    available as ``value``.
    """

    def __init__(self, field: str, message: str, value: Any = None, *, show_value: bool = True) -> None:
        """``show_value=False`` leaves the value out of the message (a missing field, or a
        message that already says what matters about it)."""
        self.field = field
        self.message = message
        self.value = value
        self.show_value = show_value
        shown = f" (got {describe_value(field, value)})" if show_value else ""
        super().__init__(f"{field}: {message}{shown}")


#: Fields whose values may be shown in an error, because they never carry user content: names and
#: ids (shown as given), and numbers (shown when they are numbers; text given there is described).
#: Everything else (prompt/response text, metadata, errors, embeddings, unknown fields, a whole
#: event) is described by its type and size only.
_NAME_FIELDS = frozenset({"service_name", "model", "event_id", "timestamp", "trace_id", "span_id",
                          "response.finish_reason"})  # fmt: skip
_NUMBER_FIELDS = frozenset({"latency_ms", "cost_usd", "prompt.tokens", "response.tokens"})
_EVENTS_PREFIX = re.compile(r"^events\[\d+\]\.")


def describe_value(field: str, value: Any) -> str:
    """How an error shows ``value`` of ``field``: ``repr`` for fields that never carry user
    content, the type and size otherwise (``str of 21 characters``, ``dict of 3 items``)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    name = _EVENTS_PREFIX.sub("", field)
    if isinstance(value, int | float) and (name in _NUMBER_FIELDS or name in _NAME_FIELDS):
        return _short_repr(value)
    if isinstance(value, str) and name in _NAME_FIELDS:
        return _short_repr(value)
    return describe_type(value)


def describe_type(value: Any) -> str:
    """``value``'s type and size, never its content."""
    kind = type(value).__name__
    if isinstance(value, str):
        return f"{kind} of {_count(len(value), 'character')}"
    if isinstance(value, bytes | bytearray):
        return f"{kind} of {_count(len(value), 'byte')}"
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return f"{kind} of {_count(len(value), 'item')}"
    return kind


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


class ConfigError(SentinelError, ValueError):
    """A configuration option or environment variable has a bad value.

    ``name`` is the option (``"retry_backoff"``) or the environment variable
    (``"SENTINEL_RETRY_BACKOFF"``) at fault, ``value`` the offending value (``None``
    for secrets, which are never shown) and ``message`` the rule it broke.
    """

    def __init__(self, name: str, message: str, value: Any = None, *, secret: bool = False) -> None:
        self.name = name
        self.message = message
        self.value = None if secret else value
        shown = "<hidden>" if secret else _short_repr(value)
        super().__init__(f"{name}={shown}: {message}")


class SendError(SentinelError):
    """A send that waits for delivery failed for good (the event was dead-lettered).

    ``retries`` is the number of attempts made, ``event_id`` the event's id; the
    transport's last error is chained as ``__cause__``.
    """

    def __init__(self, message: str, *, retries: int, event_id: str) -> None:
        self.retries = retries
        self.event_id = event_id
        super().__init__(f"{message} (event {event_id}, after {retries} attempts)")


class BrokerConnectionError(SentinelError, ConnectionError):
    """No broker in ``brokers`` can be reached; the message says why (refused, no answer...).

    A ``send(..., wait=True)`` that times out while the brokers are known to be unreachable
    raises ``BrokerUnreachableError``: a ``DeliveryTimeoutError`` (what happened to the call) that
    is also a ``BrokerConnectionError`` (why), with a ``BrokerConnectionError`` as its
    ``__cause__``. So ``except DeliveryTimeoutError`` catches every timed-out wait, and
    ``except BrokerConnectionError`` the ones no broker could have acked.
    """

    def __init__(self, message: str, *, brokers: Sequence[str]) -> None:
        self.brokers = list(brokers)
        super().__init__(f"{message} (brokers: {', '.join(self.brokers)})")


class DeliveryTimeoutError(SentinelError, TimeoutError):
    """``send(..., wait=True)`` ran past its ``timeout`` (``flush`` returns False instead).

    The Go SDK's ``ErrContextCanceled``. The events concerned stay spooled and
    will still be delivered; ``pending`` is how many were not yet acknowledged. When no
    broker was reachable it is a ``BrokerUnreachableError``, whose ``__cause__`` says why.
    """

    def __init__(self, message: str, *, timeout: float, pending: int = 0) -> None:
        self.timeout = timeout
        self.pending = pending
        super().__init__(f"{message} (timeout {timeout:g}s, {pending} pending)")


class BrokerUnreachableError(DeliveryTimeoutError, BrokerConnectionError):
    """A wait for delivery ran past its timeout while no broker was reachable.

    Both a ``DeliveryTimeoutError`` (``timeout``, ``pending``) and a ``BrokerConnectionError``
    (``brokers``); ``__cause__`` is the ``BrokerConnectionError`` saying why (refused, no answer).
    The events stay spooled and are delivered once a broker is back.
    """

    def __init__(self, message: str, *, timeout: float, pending: int = 0, brokers: Sequence[str]) -> None:
        self.timeout = timeout
        self.pending = pending
        self.brokers = list(brokers)
        Exception.__init__(self, f"{message} (timeout {timeout:g}s, {pending} pending)")


class SpoolFullError(SentinelError):
    """The spool cannot take the event now; it was not spooled.

    Either the spool reached ``max_spool_bytes`` and the overflow policy refused the event, or
    the disk holding it is full or failed (the SQLite error is the ``__cause__``), or the write
    waited ``write_timeout`` for the writes before it (in ``async`` mode: for the writer thread to
    catch up) — a stalled disk, or another connection holding the file's write lock. The message
    says which.
    """

    def __init__(self, message: str, *, spool_bytes: int, max_spool_bytes: int) -> None:
        self.spool_bytes = spool_bytes
        self.max_spool_bytes = max_spool_bytes
        super().__init__(f"{message} ({spool_bytes} of {max_spool_bytes} bytes used)")


class ClientClosedError(SentinelError):
    """A client method was called after ``close()``, or the client closed while ``send(wait=True)``
    waited (that event stays in the spool, delivered by the next client on its directory)."""


class SpoolClosed(ClientClosedError):
    """The spool was used after it was closed (its client closed it)."""


class CannotDecrypt(SentinelError):
    """A sealed (encrypted) event body could not be opened: no ``encryption_key``, or another one.

    The client dead-letters such an event with this message; ``sentinel-durable export`` reports it.
    """


class SpoolFileError(SentinelError):
    """One spool file cannot be used now; the message names the file or says why."""


class SpoolFileBusy(SpoolFileError):
    """A spool file is owned by a live process (its owner lock is held)."""


class SpoolFileCorrupt(SpoolFileError):
    """A spool file failed to open or its integrity check: the client moves it aside (quarantine)."""


class SpoolFileTooNew(SpoolFileError):
    """A spool file written by a newer sentinel-durable: left alone for that version to drain."""


class SpoolFileUnavailable(SpoolFileError):
    """A spool file could not be opened for a reason that may pass (locked by a tool, I/O error, disk full)."""
