"""sentinel-durable: offline-first LLM telemetry for LLM-Sentinel, through Kafka.

Every event is written to an on-disk spool first and delivered by a background
flusher, so broker outages, crashes and restarts lose nothing. This module's
exports are the public API; everything else is private.
"""

from ._version import __version__
from .aio import AsyncClient
from .builder import EventBuilder
from .client import Client
from .config import Config
from .errors import (
    BrokerConnectionError,
    BrokerUnreachableError,
    ClientClosedError,
    ConfigError,
    DeliveryTimeoutError,
    SendError,
    SentinelError,
    SpoolFullError,
    ValidationError,
)
from .event import PromptInfo, ResponseInfo, TelemetryEvent
from .observe import Observation, Usage, current_observation, usage_from_anthropic, usage_from_openai
from .stats import Stats

__all__ = [
    "AsyncClient",
    "BrokerConnectionError",
    "BrokerUnreachableError",
    "Client",
    "ClientClosedError",
    "Config",
    "ConfigError",
    "DeliveryTimeoutError",
    "EventBuilder",
    "Observation",
    "PromptInfo",
    "ResponseInfo",
    "SendError",
    "SentinelError",
    "SentinelSpanExporter",
    "SpoolFullError",
    "Stats",
    "TelemetryEvent",
    "Usage",
    "ValidationError",
    "__version__",
    "current_observation",
    "usage_from_anthropic",
    "usage_from_openai",
]


def __getattr__(name: str) -> object:
    # SentinelSpanExporter subclasses OpenTelemetry's SpanExporter: imported on first use only,
    # so that importing sentinel_durable never imports opentelemetry-sdk.
    if name == "SentinelSpanExporter":
        try:
            from .integrations.span_exporter import SentinelSpanExporter
        except ImportError as exc:
            if not (exc.name or "").startswith("opentelemetry"):
                raise
            raise ImportError(
                f"SentinelSpanExporter needs the OpenTelemetry SDK ({exc.name} is missing): "
                "pip install 'sentinel-durable[otel]'",
                name=exc.name,
            ) from exc
        return SentinelSpanExporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
