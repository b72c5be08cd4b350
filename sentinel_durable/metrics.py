"""The documented import path for ``sentinel_durable.integrations.metrics``."""

from .integrations.metrics import Registration, register_otel_metrics, register_prometheus

__all__ = ["Registration", "register_otel_metrics", "register_prometheus"]
