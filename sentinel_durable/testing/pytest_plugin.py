"""pytest plugin (entry point ``sentinel_durable``): test your code against a real Kafka-compatible broker.

Installed with sentinel-durable and loaded by pytest automatically. Fixtures:

- ``sentinel_broker``: an :class:`~sentinel_durable.testing.EmbeddedBroker` (Tansu), one per
  test session, started the first time a test asks for it.
- ``sentinel_client``: a :class:`sentinel_durable.Client` bound to that broker, a topic of its
  own and a temporary spool directory; closed after the test.
- ``sentinel_events``: ``sentinel_events(expected=None, *, topic=None, timeout=30.0)`` flushes
  ``sentinel_client`` (unless closed) and returns the events on its topic as
  :class:`sentinel_durable.TelemetryEvent`, waiting until ``expected`` arrived.
- ``sentinel_client_options``: override it to pass more ``Client`` options.

    def test_my_app_reports_its_llm_call(sentinel_client, sentinel_events):
        my_app.run(telemetry=sentinel_client)
        (event,) = sentinel_events(expected=1)
        assert event.model == "gpt-4"

The broker needs the ``testing`` extra (``pip install 'sentinel-durable[testing]'``).
Importing this module starts nothing.
"""

from __future__ import annotations

import re
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from sentinel_durable import Client, TelemetryEvent
    from sentinel_durable.testing import EmbeddedBroker

__all__ = [
    "ReadEvents",
    "sentinel_broker",
    "sentinel_client",
    "sentinel_client_options",
    "sentinel_events",
    "sentinel_topic",
]

_CLOSE_TIMEOUT_S = 5.0


class ReadEvents(Protocol):
    """The type of the ``sentinel_events`` fixture."""

    def __call__(
        self, expected: int | None = None, *, topic: str | None = None, timeout: float = 30.0
    ) -> list[TelemetryEvent]: ...


@pytest.fixture(scope="session")
def sentinel_broker() -> Iterator[EmbeddedBroker]:
    """A real Kafka-compatible broker (Tansu, in memory) for the whole test session."""
    with warnings.catch_warnings():
        # kafka-python 3.0 loads its protocol schemas with importlib.resources' legacy API, which
        # warns at import time: a user's ``filterwarnings = error`` must not fail this fixture, nor
        # the client's flusher thread when it imports the producer. Imported here, it is imported once.
        warnings.simplefilter("ignore", DeprecationWarning)
        import kafka  # noqa: F401  # type: ignore[import-untyped, unused-ignore]

        from sentinel_durable.testing import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture
def sentinel_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses: the test's name and a random suffix."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-.")[:150]
    return f"sentinel-test-{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sentinel_client_options() -> dict[str, Any]:
    """Extra ``Client`` options for ``sentinel_client``; override this fixture to change them."""
    return {}


@pytest.fixture
def sentinel_client(
    sentinel_broker: EmbeddedBroker, sentinel_topic: str, sentinel_client_options: dict[str, Any], tmp_path: Path
) -> Iterator[Client]:
    """A client of ``sentinel_broker`` on ``sentinel_topic``, spooling under ``tmp_path``; closed after the test."""
    from sentinel_durable import Client

    options: dict[str, Any] = {
        "brokers": [sentinel_broker.bootstrap_servers],
        "topic": sentinel_topic,
        "spool_dir": tmp_path / "sentinel-spool",
        "retry_backoff": 0.05,
        "max_retry_backoff": 0.5,
    }
    client = Client(**(options | sentinel_client_options))
    try:
        yield client
    finally:
        client.close(timeout=_CLOSE_TIMEOUT_S)


@pytest.fixture
def sentinel_events(sentinel_broker: EmbeddedBroker, sentinel_client: Client) -> ReadEvents:
    """``read(expected=None, *, topic=None, timeout=30.0) -> list[TelemetryEvent]`` of a topic of ``sentinel_broker``.

    Flushes ``sentinel_client`` first when it is still open, then reads every record of
    ``topic`` (default: the client's), waiting until at least ``expected`` arrived; raises
    ``TimeoutError`` after ``timeout`` seconds. Duplicates (at-least-once) are returned too.
    """
    from sentinel_durable import TelemetryEvent

    def read(expected: int | None = None, *, topic: str | None = None, timeout: float = 30.0) -> list[TelemetryEvent]:
        deadline = time.monotonic() + timeout
        if not sentinel_client.closed:
            sentinel_client.flush(timeout=timeout)
        records = sentinel_broker.read_topic(
            topic or sentinel_client.config.topic, expected=expected, timeout=max(0.1, deadline - time.monotonic())
        )
        return [TelemetryEvent.from_json(record.value) for record in records]

    return read
