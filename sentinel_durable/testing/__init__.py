"""Test helpers that ship with sentinel-durable: a real, embedded Kafka-compatible broker.

    from sentinel_durable.testing import EmbeddedBroker

    with EmbeddedBroker(with_proxy=True) as broker:
        client = sentinel.Client(brokers=[broker.bootstrap_servers], topic="t")
        broker.proxy.cut()       # the broker is unreachable: connections closed and refused
        broker.proxy.restore()   # reachable again
        records = broker.read_topic("t", expected=1)

Needs the ``testing`` extra: ``pip install 'sentinel-durable[testing]'``.

The names are imported on first use, so that importing the pytest plugin (a submodule, loaded
by every pytest run where the package is installed) imports neither kafka-python nor the broker.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentinel_durable.testing._broker import EmbeddedBroker, wait_until
    from sentinel_durable.testing._proxy import TcpProxy

__all__ = ["EmbeddedBroker", "TcpProxy", "wait_until"]

_HOMES = {"EmbeddedBroker": "._broker", "wait_until": "._broker", "TcpProxy": "._proxy"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    globals()[name] = value
    return value
