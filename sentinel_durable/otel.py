"""The import path of 0.1 for ``sentinel_durable.integrations.otel`` (kept working)."""

from .integrations.otel import current_span_ids, resolve_span_ids

__all__ = ["current_span_ids", "resolve_span_ids"]
