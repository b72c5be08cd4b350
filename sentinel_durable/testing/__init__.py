"""Test helpers that ship with sentinel-durable: a real, embedded Kafka-compatible broker.

    from sentinel_durable.testing import EmbeddedBroker

    with EmbeddedBroker(with_proxy=True) as broker:
        client = sentinel.Client(brokers=[broker.bootstrap_servers], topic="t")
        broker.proxy.cut()       # the broker is unreachable: connections closed and refused
        broker.proxy.restore()   # reachable again
        records = broker.read_topic("t", expected=1)

Needs the ``testing`` extra: ``pip install 'sentinel-durable[testing]'``.
"""

from sentinel_durable.testing._broker import EmbeddedBroker, wait_until
from sentinel_durable.testing._proxy import TcpProxy

__all__ = ["EmbeddedBroker", "TcpProxy", "wait_until"]
