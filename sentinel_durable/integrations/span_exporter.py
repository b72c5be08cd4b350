"""``SentinelSpanExporter``: OpenTelemetry GenAI spans, from any instrumentation, as durable events.

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(sentinel.SentinelSpanExporter(client)))

``export()`` only spools (one transaction per batch of spans) and never touches the network;
the client's flusher delivers. Spans that are not a model call are ignored; a model-call span
that cannot be made an event is counted in ``stats().capture_errors`` and logged once. Needs
``opentelemetry-sdk`` (the ``otel`` extra).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .capture import Capture
from .genai import Prices
from .span_reading import call_of_span, is_genai, llm_operation

if TYPE_CHECKING:
    from ..aio import AsyncClient
    from ..client import Client
    from ..event import TelemetryEvent

__all__ = ["SentinelSpanExporter"]

logger = logging.getLogger("sentinel_durable.integrations")

#: The Anthropic SDK's own call spans (``anthropic`` 2.x traces its calls itself).
_ANTHROPIC_SDK_SCOPE = "com.anthropic.sdk.python"


class SentinelSpanExporter(SpanExporter):
    """An OpenTelemetry ``SpanExporter`` that spools GenAI model-call spans through ``client``.

    ``service`` overrides the resource's ``service.name``; ``capture_content=False`` keeps the
    prompt and response text out of the events (tokens, latency and errors stay); ``prices``
    (model -> USD per 1,000 input and output tokens, or a callable ``(model, input_tokens,
    output_tokens) -> USD``) sets ``cost_usd``, 0 otherwise. ``before_send`` applies as to any
    send. ``force_flush`` is ``client.flush``; ``shutdown`` closes the client.
    """

    def __init__(
        self,
        client: Client | AsyncClient,
        *,
        service: str | None = None,
        capture_content: bool = True,
        prices: Prices | None = None,
    ) -> None:
        from ..aio import AsyncClient
        from ..client import Client

        if not isinstance(client, Client | AsyncClient):
            raise TypeError(
                f"SentinelSpanExporter needs a sentinel_durable Client or AsyncClient, not {type(client).__name__}"
            )
        self._capture = Capture(
            client, source="SentinelSpanExporter", service=service, capture_content=capture_content, prices=prices
        )
        self._shut_down = False
        self._skipping_sdk_spans_logged = False

    @property
    def client(self) -> Client | AsyncClient:
        return self._capture.client

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Spool the model calls among ``spans`` in one transaction; FAILURE when the spool refused them."""
        if self._shut_down:
            return SpanExportResult.FAILURE
        events: list[TelemetryEvent] = []
        skip_sdk_spans: bool | None = None
        for span in spans:
            # A plain dict: the span's own mapping takes a lock on every read (BoundedAttributes).
            attributes = dict(span.attributes) if span.attributes else None
            if not attributes or not is_genai(attributes):
                continue
            operation = llm_operation(attributes)
            if operation is None:
                continue  # a tool execution, an agent...: not a model call
            scope = span.instrumentation_scope
            if scope is not None and scope.name == _ANTHROPIC_SDK_SCOPE:
                if skip_sdk_spans is None:
                    skip_sdk_spans = self._anthropic_instrumented()
                if skip_sdk_spans:
                    continue
            try:
                events.append(self._capture.event(call_of_span(span, operation, attributes)))
            except Exception as exc:
                self._capture.failed(exc, 1, what="GenAI span")
        if self._capture.send_batch(events):
            return SpanExportResult.SUCCESS
        return SpanExportResult.FAILURE

    def _anthropic_instrumented(self) -> bool:
        """Whether an instrumentation wraps the Anthropic SDK's calls: then its spans describe the
        calls the SDK's own spans describe, and only the instrumentation's become events."""
        module = sys.modules.get("anthropic.resources.messages")
        messages = getattr(module, "Messages", None)
        create = getattr(messages, "create", None)
        # Instrumentations wrap it (wrapt's FunctionWrapper, which even passes isinstance for a
        # function); the SDK's own decorator leaves a plain function (with a __wrapped__ of its own).
        wrapped = create is not None and type(create) is not types.FunctionType
        if wrapped and not self._skipping_sdk_spans_logged:
            self._skipping_sdk_spans_logged = True
            logger.info(
                "an instrumentation wraps the anthropic SDK: its spans become events, the SDK's own "
                "spans of the same calls (scope %s) do not", _ANTHROPIC_SDK_SCOPE,
            )  # fmt: skip
        return wrapped

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """``client.flush``: True once every event spooled so far was delivered."""
        return bool(self._call("flush", timeout_millis / 1000.0))

    def shutdown(self) -> None:
        """Close the client (it delivers what it can within its ``shutdown_timeout``, keeps the rest)."""
        if self._shut_down:
            return
        self._shut_down = True
        self._call("close", self.client.config.shutdown_timeout)  # None: no limit

    def _call(self, name: str, timeout: float | None) -> Any:
        method = getattr(self.client, name)
        if not self._capture.is_async:
            return method(timeout)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(method(timeout))
        # On the loop's own thread nothing can be awaited here: start it, and say it is not done.
        self._capture.run(lambda: method(timeout), 0)
        return False

    def __repr__(self) -> str:
        return f"<SentinelSpanExporter client={self.client!r}>"
