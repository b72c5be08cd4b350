"""Trace and span ids of the current OpenTelemetry span, for events tracked inside it.

No import cost, with or without ``opentelemetry-api`` installed: a span can only be current
once the application imported ``opentelemetry.trace`` (every tracer does), so until then
there is nothing to read and nothing is imported. Once it is imported, reading the ids is
two attribute lookups and two hex formats.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["current_span_ids", "resolve_span_ids"]

logger = logging.getLogger(__name__)

_logged_failure = False


def current_span_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current OpenTelemetry span as W3C lowercase hex (32 and 16 characters).

    None when ``opentelemetry.trace`` was never imported (OpenTelemetry absent or unused),
    when no span is current, or when the current span context is invalid.
    """
    if "opentelemetry.trace" not in sys.modules:
        return None
    global _logged_failure
    try:
        # Already in sys.modules, so this import is a lookup; it also waits for another thread
        # that is still importing it, instead of reading a half-initialised module.
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)
    except Exception:  # a broken tracer must never break track() or build()
        if not _logged_failure:
            _logged_failure = True
            logger.warning("could not read the current OpenTelemetry span; events get no trace ids", exc_info=True)
        return None


def resolve_span_ids(trace_id: str | None, span_id: str | None) -> tuple[str | None, str | None]:
    """The ids an event gets: the caller's when it set either, else the current span's, else none.

    Ids are never mixed: a caller who sets only ``trace_id`` gets no span id from the
    current span.
    """
    if trace_id is not None or span_id is not None:
        return trace_id, span_id
    ids = current_span_ids()
    return (None, None) if ids is None else ids
