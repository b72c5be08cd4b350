"""The fields of one ``track`` call: declared once, for ``Client.track``, ``AsyncClient.track``
and ``observe``, and turned into the event they describe in one place."""

# No ``from __future__ import annotations`` here: TypedDict reads Required[] from evaluated annotations.
from collections.abc import Mapping, Sequence
from typing import Any, Required, TypedDict

from .config import Config
from .integrations.otel import resolve_span_ids

__all__ = ["TRACK_DEFAULTS", "TrackFields", "check_track_fields", "event_fields"]


class TrackFields(TypedDict, total=False):
    """The keywords of ``track``: five required, the rest with the defaults of ``TRACK_DEFAULTS``."""

    service: Required[str]
    model: Required[str]
    prompt: Required[str]
    response: Required[str]
    latency_ms: Required[float]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    finish_reason: str
    trace_id: str | None
    span_id: str | None
    metadata: Mapping[str, str] | None
    errors: Sequence[str] | None
    prompt_embedding: Sequence[float] | None
    response_embedding: Sequence[float] | None


TRACK_DEFAULTS: dict[str, Any] = {
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "cost_usd": 0.0,
    "finish_reason": "stop",
    "trace_id": None,
    "span_id": None,
    "metadata": None,
    "errors": None,
    "prompt_embedding": None,
    "response_embedding": None,
}
assert set(TRACK_DEFAULTS) == TrackFields.__optional_keys__  # one declaration, kept whole


_REQUIRED = frozenset(TrackFields.__required_keys__)
_ALLOWED = _REQUIRED | TrackFields.__optional_keys__


def check_track_fields(fields: Mapping[str, Any], caller: str = "track") -> None:
    """The ``TypeError`` Python gives a call with a missing or unknown keyword (``track(**fields)``
    cannot have Python check them). Values are checked with the event."""
    if _REQUIRED <= fields.keys() <= _ALLOWED:
        return  # the usual case: two set comparisons
    unknown = sorted(set(fields) - _ALLOWED)
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    missing = [name for name in ("service", "model", "prompt", "response", "latency_ms") if name not in fields]
    names = ", ".join(repr(name) for name in missing)
    plural = "s" if len(missing) > 1 else ""
    raise TypeError(f"{caller}() missing {len(missing)} required keyword argument{plural}: {names}")


def event_fields(config: Config, fields: Mapping[str, Any], *, current_span: bool = True) -> dict[str, Any]:
    """The event of a ``track`` call, as fields for ``validate_event``: the trace and span ids of
    the current OpenTelemetry span when the caller gave none (and ``otel_trace_ids`` is on).
    ``current_span=False``: the caller read the span's ids itself (when the call began)."""
    given = {**TRACK_DEFAULTS, **fields}
    trace_id, span_id = given["trace_id"], given["span_id"]
    if current_span and config.otel_trace_ids:
        trace_id, span_id = resolve_span_ids(trace_id, span_id)
    metadata, errors = given["metadata"], given["errors"]
    return {
        "service_name": given["service"],
        "model": given["model"],
        "prompt": {"text": given["prompt"], "tokens": given["prompt_tokens"], "embedding": given["prompt_embedding"]},
        "response": {
            "text": given["response"],
            "tokens": given["completion_tokens"],
            "finish_reason": given["finish_reason"],
            "embedding": given["response_embedding"],
        },
        "latency_ms": given["latency_ms"],
        "cost_usd": given["cost_usd"],
        "metadata": dict(metadata) if isinstance(metadata, Mapping) else ({} if metadata is None else metadata),
        "errors": list(errors) if isinstance(errors, list | tuple) else ([] if errors is None else errors),
        "trace_id": trace_id,
        "span_id": span_id,
    }
