"""The ``SENTINEL_*`` environment variables: which option each sets, and how its text is read
(durations like ``250ms`` or ``2m``, sizes like ``64MiB``, booleans). ``Config.from_env`` uses them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ENV_VARIABLES", "parse_duration", "split_brokers"]


def split_brokers(value: Any) -> Any:
    # "a:9092,b:9092" is a common way to write a broker list; accept it as the list it means.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"(\d+)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


_PLAIN_SECONDS = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration(text: str) -> float:
    """``"100ms"`` -> 0.1, ``"1m30s"`` -> 90.0 (Go's ``time.ParseDuration`` units); a bare number
    is seconds (``"5"`` -> 5.0, ``"2.5"`` -> 2.5). A negative duration is refused as such."""
    sign, body = (text[0], text[1:]) if text[:1] in ("+", "-") else ("", text)
    seconds = float(body) if _PLAIN_SECONDS.fullmatch(body) else _unit_duration(body)
    if sign == "-" and seconds:
        raise ValueError("is negative: a duration must be 0 or more, like 100ms, 5s or 5")
    return seconds


def _unit_duration(text: str) -> float:
    position, seconds = 0, 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            break
        seconds += float(match[1]) * _DURATION_UNITS[match[2]]
        position = match.end()
    if position == 0 or position != len(text):
        raise ValueError("not a duration: use seconds (5, 2.5) or a number and a unit, like 100ms, 5s, 2m or 1h")
    return seconds


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("not a boolean: use true/false, 1/0 or yes/no")


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("not an integer") from None


def _parse_size(text: str) -> int:
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError("not a size: use bytes, optionally with a unit like 512MiB or 1GB")
    return int(match[1]) * _SIZE_UNITS[(match[2] or "").lower()]


def _parse_optional_duration(text: str) -> float | None:
    seconds = parse_duration(text)
    return seconds or None  # 0 means "never"


def _parse_optional_str(text: str) -> str:
    return text


#: Every variable ``Config.from_env`` reads: name -> (option, parser).
ENV_VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "SENTINEL_BROKERS": ("brokers", split_brokers),
    "SENTINEL_TOPIC": ("topic", _parse_optional_str),
    "SENTINEL_MAX_RETRIES": ("max_retries", _parse_int),
    "SENTINEL_RETRY_BACKOFF": ("retry_backoff", parse_duration),
    "SENTINEL_MAX_RETRY_BACKOFF": ("max_retry_backoff", parse_duration),
    "SENTINEL_WRITE_TIMEOUT": ("write_timeout", parse_duration),
    "SENTINEL_READ_TIMEOUT": ("read_timeout", parse_duration),
    "SENTINEL_BATCH_SIZE": ("batch_size", _parse_int),
    "SENTINEL_BATCH_TIMEOUT": ("batch_timeout", parse_duration),
    "SENTINEL_COMPRESSION": ("compression", str.lower),
    "SENTINEL_REQUIRE_ACKS": ("require_acks", _parse_int),
    "SENTINEL_ASYNC": ("async_mode", _parse_bool),
    "SENTINEL_ENABLE_VALIDATION": ("enable_validation", _parse_bool),
    "SENTINEL_TRUNCATE_TEXT": ("truncate_text", _parse_bool),
    "SENTINEL_MAX_TEXT_LENGTH": ("max_text_length", _parse_int),
    "SENTINEL_MAX_MESSAGE_BYTES": ("max_message_bytes", _parse_size),
    "SENTINEL_OTEL_TRACE_IDS": ("otel_trace_ids", _parse_bool),
    "SENTINEL_SPOOL_DIR": ("spool_dir", Path),
    "SENTINEL_DURABILITY": ("durability", str.lower),
    "SENTINEL_MAX_SPOOL_BYTES": ("max_spool_bytes", _parse_size),
    "SENTINEL_OVERFLOW": ("overflow", str.lower),
    "SENTINEL_MAX_EVENT_AGE": ("max_event_age", _parse_optional_duration),
    "SENTINEL_TRANSPORT": ("transport", str.lower),
    "SENTINEL_PARTITION_KEY": ("partition_key", str.lower),
    "SENTINEL_SHUTDOWN_TIMEOUT": ("shutdown_timeout", parse_duration),
    "SENTINEL_CLIENT_LIBRARY_LOGS": ("client_library_logs", _parse_bool),
    "SENTINEL_SECURITY_PROTOCOL": ("security_protocol", str.upper),
    "SENTINEL_SASL_MECHANISM": ("sasl_mechanism", str.upper),
    "SENTINEL_SASL_USERNAME": ("sasl_username", _parse_optional_str),
    "SENTINEL_SASL_PASSWORD": ("sasl_password", _parse_optional_str),
    "SENTINEL_SSL_CAFILE": ("ssl_cafile", Path),
    "SENTINEL_SSL_CERTFILE": ("ssl_certfile", Path),
    "SENTINEL_SSL_KEYFILE": ("ssl_keyfile", Path),
    "SENTINEL_SSL_PASSWORD": ("ssl_password", _parse_optional_str),
    "SENTINEL_ENCRYPTION_KEY": ("encryption_key", _parse_optional_str),
}
