"""What the flusher knows and says about the brokers: reachable or not, refusing the events or not.

One WARNING when an outage starts, one INFO when the first ack ends it; one ERROR when the
deployment starts refusing every record (a denied or missing topic, a refused login), one INFO
when it accepts them again. The figures go to the flusher's counters (what ``stats()`` shows).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .stats import FlusherCounters

__all__ = ["Health"]

logger = logging.getLogger("sentinel_durable.flusher")


class Health:
    """Reachability and refusals of one flusher's brokers (written on the flusher thread)."""

    def __init__(self, counters: FlusherCounters, brokers: Sequence[str]) -> None:
        self._counters = counters
        self._brokers = ", ".join(brokers)
        self.blocked = False  # the deployment refuses every record (reported once, at ERROR)
        self._outage_error: str | None = None  # last_error as the outage began; cleared on recovery

    def link_changed(self, reachable: bool, reason: str | None) -> None:
        counters = self._counters
        with counters.lock:
            if reachable:
                if counters.broker_connected is False:
                    logger.info("Kafka is reachable again (%s); delivering the spooled backlog", self._brokers)
                    if counters.last_error == self._outage_error:
                        counters.last_error = None  # the outage is over; the WARNING above keeps its story
                counters.broker_connected = True
                return
            if reason:
                counters.last_error = reason
            if counters.broker_connected is not False:
                logger.warning(
                    "Kafka is unreachable (%s): %s. Events stay in the spool and are retried with backoff.",
                    self._brokers, counters.last_error,
                )  # fmt: skip
                counters.broker_connected = False
            self._outage_error = counters.last_error

    def report_blocked(self, blocked: str | None, delivered: bool, waiting: int) -> None:
        """After a batch: ``blocked`` is the refusal it met (None: none), ``delivered`` whether any record was acked."""
        if blocked is not None and not self.blocked:
            logger.error(
                "Kafka refuses the events: %s. They stay in the spool (%d in this batch) and are retried"
                " with backoff until this is fixed; none is dead-lettered for it.", blocked, waiting,
            )  # fmt: skip
            self.blocked = True
        elif delivered and self.blocked:
            logger.info("Kafka accepts the events again; delivering the spooled backlog")
            self.blocked = False
