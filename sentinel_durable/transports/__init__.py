"""Transports: what delivers a claimed batch to Kafka and says, per record, what became of it.

* ``base``              — the ``Transport`` protocol, per-record outcomes, the record's key and
                          headers, the error classes every transport maps to, and the TCP probe
                          that tells "no broker reachable" from a slow one;
* ``kafka_python``      — the default, kafka-python's ``KafkaProducer`` (``kafka_python_logs``:
                          what it logs about our producers);
* ``confluent``         — the fast one, confluent-kafka (librdkafka), for high-volume jobs;
* ``factory``           — the configured one, imported on the thread that makes the client.

Transports import the records they deliver (``sentinel_durable.records``), never the spool.
"""

from .base import Link, Outcome, ProbeSchedule, RecordResult, Transport, probe_brokers, record_headers, record_key
from .factory import check_transport_config, create_transport, transport_class

__all__ = [
    "Link",
    "Outcome",
    "ProbeSchedule",
    "RecordResult",
    "Transport",
    "check_transport_config",
    "create_transport",
    "probe_brokers",
    "record_headers",
    "record_key",
    "transport_class",
]
