"""Choosing and building the configured transport, and checking at construction that it can work here."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from ..config import Config
from ..errors import ConfigError
from .base import Link, Transport

__all__ = ["check_transport_config", "create_transport", "transport_class"]

#: Compression codec -> (importable module it needs, pip extra that installs it).
_CODECS = {"snappy": ("snappy", "python-snappy"), "lz4": ("lz4", "sentinel-durable[lz4]"),
           "zstd": ("zstandard", "sentinel-durable[zstd]")}  # fmt: skip


def check_transport_config(config: Config) -> None:
    """Raise ``ConfigError`` at construction for a transport or codec that cannot work here."""
    if config.transport == "confluent":
        if importlib.util.find_spec("confluent_kafka") is None:
            raise ConfigError(
                "transport", "needs confluent-kafka: pip install 'sentinel-durable[fast]'", config.transport
            )
        return  # librdkafka has every codec built in
    needed = _CODECS.get(config.compression)
    if needed is not None and importlib.util.find_spec(needed[0]) is None:
        module, extra = needed
        raise ConfigError("compression", f"needs the {module!r} module: pip install '{extra}'", config.compression)


def transport_class(config: Config) -> Callable[[Config, Link | None], Transport]:
    """The configured transport's class, its module imported.

    The client calls this on the thread that makes it: imported later, on the flusher thread, a
    fork() taken while that import runs leaves the child a half-imported module it can never use.
    """
    if config.transport == "confluent":
        from .confluent import ConfluentTransport

        return ConfluentTransport
    from .kafka_python import KafkaPythonTransport

    return KafkaPythonTransport


def create_transport(config: Config, link: Link | None = None) -> Transport:
    """Build the configured transport (on the flusher thread: this may touch the network)."""
    check_transport_config(config)
    return transport_class(config)(config, link)
