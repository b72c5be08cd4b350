"""The examples do what their docstrings say, against a real Kafka-compatible broker (Tansu)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port

import sentinel_durable as sentinel
from sentinel_durable.testing import EmbeddedBroker

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STATUS = re.compile(r"iteration (\d+): spooled=\d+ in_flight=\d+ delivered=(\d+) broker_connected=(\w+)")


def load_example(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


openai_chat = load_example("openai_chat")
anthropic_messages = load_example("anthropic_messages")


def example_command(name: str, *args: str) -> list[str]:
    return [sys.executable, str(EXAMPLES / f"{name}.py"), *args]


def example_env() -> dict[str, str]:
    """The caller's environment without its SENTINEL_* variables, with quick retries."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SENTINEL_")}
    return env | {
        "SENTINEL_RETRY_BACKOFF": "50ms",
        "SENTINEL_MAX_RETRY_BACKOFF": "500ms",
        "SENTINEL_WRITE_TIMEOUT": "2s",
    }


def topic_events(broker: EmbeddedBroker, topic: str, expected: int | None = None) -> list[dict[str, Any]]:
    return [json.loads(record.value) for record in broker.read_topic(topic, expected=expected, timeout=15)]


def redeliver(spool_dir: Path, broker: EmbeddedBroker, topic: str) -> bool:
    """Open ``spool_dir`` with a new client and flush it: what the next start of an app does."""
    with sentinel.Client(brokers=[broker.bootstrap_servers], topic=topic, spool_dir=spool_dir) as client:
        return client.flush(timeout=15)


def api_client(*path: str, reply: Any) -> Any:
    """A stand-in for an SDK client: ``path`` leads to a ``create(**request)`` returning or raising ``reply``."""

    def create(**request: Any) -> Any:
        if isinstance(reply, Exception):
            raise reply
        return reply

    fake: Any = types.SimpleNamespace(create=create)
    for attribute in reversed(path):
        fake = types.SimpleNamespace(**{attribute: fake})
    return fake


# --- the OpenAI and Anthropic integrations ------------------------------------------------------


@pytest.mark.usefixtures("fresh_provider")
def test_openai_chat_tracks_usage_finish_reason_and_answer(
    broker: EmbeddedBroker, client: sentinel.Client, topic: str, provider: Any
) -> None:
    import openai

    provider.answer(text="Paris", input_tokens=14, output_tokens=3, finish_reason="length")
    llm = openai.OpenAI(base_url=provider.base_url, api_key="test-key", max_retries=0)  # the real library

    answer, event_id = openai_chat.tracked_chat(llm, client, model="gpt-4o", prompt="Capital of France?")

    assert answer == "Paris"
    assert client.flush(timeout=15)
    [event] = topic_events(broker, topic, expected=1)
    assert event["event_id"] == event_id
    assert event["model"] == "gpt-4o"
    assert event["prompt"] == {"text": "Capital of France?", "tokens": 14}
    assert event["response"] == {"text": "Paris", "tokens": 3, "finish_reason": "length"}
    assert event["cost_usd"] == pytest.approx((14 * 2.50 + 3 * 10.00) / 1e6)
    assert event["errors"] == []


@pytest.mark.usefixtures("fresh_provider")
def test_openai_chat_failure_is_tracked_with_its_error_and_reraised(
    broker: EmbeddedBroker, client: sentinel.Client, topic: str, provider: Any
) -> None:
    import openai

    provider.fail(429)
    llm = openai.OpenAI(base_url=provider.base_url, api_key="test-key", max_retries=0)

    with pytest.raises(openai.RateLimitError):
        openai_chat.tracked_chat(llm, client, model="gpt-4o", prompt="Capital of France?")

    assert client.flush(timeout=15)
    [event] = topic_events(broker, topic, expected=1)
    assert event["errors"][0].startswith("RateLimitError: Error code: 429")
    assert event["response"]["finish_reason"] == "error"


def test_anthropic_messages_tracks_usage_stop_reason_and_text_blocks(
    broker: EmbeddedBroker, client: sentinel.Client, topic: str
) -> None:
    # A stand-in for the client: the fake provider answers with one text block, and this is about several
    # text blocks around a tool-use block.
    message = types.SimpleNamespace(
        usage=types.SimpleNamespace(input_tokens=12, output_tokens=4),
        stop_reason="end_turn",
        content=[
            types.SimpleNamespace(type="text", text="Paris, "),
            types.SimpleNamespace(type="tool_use", name="lookup", input={}),
            types.SimpleNamespace(type="text", text="France."),
        ],
    )
    anthropic = api_client("messages", reply=message)

    answer, event_id = anthropic_messages.tracked_message(
        anthropic, client, model="claude-haiku-4-5", prompt="Capital of France?"
    )

    assert answer == "Paris, France."
    assert client.flush(timeout=15)
    [event] = topic_events(broker, topic, expected=1)
    assert event["event_id"] == event_id
    assert event["prompt"] == {"text": "Capital of France?", "tokens": 12}
    assert event["response"] == {"text": "Paris, France.", "tokens": 4, "finish_reason": "end_turn"}
    assert event["cost_usd"] == pytest.approx((12 * 1.00 + 4 * 5.00) / 1e6)


@pytest.mark.usefixtures("fresh_provider")
def test_anthropic_messages_failure_is_tracked_with_its_error_and_reraised(
    broker: EmbeddedBroker, client: sentinel.Client, topic: str, provider: Any
) -> None:
    import anthropic

    provider.fail(500)
    llm = anthropic.Anthropic(base_url=provider.anthropic_base_url, api_key="test-key", max_retries=0,
                              open_telemetry={"traces": False})  # fmt: skip

    with pytest.raises(anthropic.InternalServerError):
        anthropic_messages.tracked_message(llm, client, model="claude-haiku-4-5", prompt="Hi")

    assert client.flush(timeout=15)
    [event] = topic_events(broker, topic, expected=1)
    assert event["errors"][0].startswith("InternalServerError: Error code: 500")


@pytest.mark.parametrize(("example", "package"), [(openai_chat, "openai"), (anthropic_messages, "anthropic")])
def test_integration_main_exits_2_without_its_package(
    example: types.ModuleType, package: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # the import fails, as when it is not installed

    assert example.main([]) == 2
    assert f"pip install {package}" in capsys.readouterr().err


@pytest.mark.parametrize(("example", "package"), [(openai_chat, "openai"), (anthropic_messages, "anthropic")])
def test_integration_main_exits_2_without_an_api_key(
    example: types.ModuleType, package: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, package, types.ModuleType(package))
    monkeypatch.delenv(f"{package.upper()}_API_KEY", raising=False)

    assert example.main([]) == 2
    assert f"{package.upper()}_API_KEY" in capsys.readouterr().err


# --- the batch job ----------------------------------------------------------------------------------


def test_batch_job_exits_0_once_every_event_is_in_the_topic(broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    job = subprocess.run(
        example_command("batch_job", "--brokers", broker.bootstrap_servers, "--topic", topic,
                        "--spool-dir", str(tmp_path), "--count", "250", "--chunk", "100", "--timeout", "20"),
        capture_output=True, text=True, env=example_env(), timeout=60,
    )  # fmt: skip

    assert job.returncode == 0, job.stdout + job.stderr
    assert job.stdout.startswith("delivered: 250 sent, 250 acked, 0 on disk")
    documents = {event["metadata"]["document"] for event in topic_events(broker, topic, expected=250)}
    assert documents == {str(n) for n in range(250)}


def test_batch_job_exits_1_without_a_broker_and_keeps_the_events_on_disk(
    broker: EmbeddedBroker, topic: str, tmp_path: Path
) -> None:
    job = subprocess.run(
        example_command("batch_job", "--brokers", f"127.0.0.1:{free_port()}", "--topic", topic,
                        "--spool-dir", str(tmp_path), "--count", "40", "--chunk", "15", "--timeout", "1"),
        capture_output=True, text=True, env=example_env(), timeout=60,
    )  # fmt: skip

    assert job.returncode == 1, job.stdout + job.stderr
    assert job.stdout.startswith("NOT delivered: 40 sent, 0 acked, 40 on disk")
    assert redeliver(tmp_path, broker, topic)  # the next start finds them all on disk
    assert len(topic_events(broker, topic, expected=40)) == 40


# --- the edge app ---------------------------------------------------------------------------------


def test_edge_app_delivers_every_event_tracked_through_an_outage(
    broker: EmbeddedBroker, topic: str, tmp_path: Path
) -> None:
    proxy = broker.proxy
    assert proxy is not None
    iterations, cut_at = 200, None
    app = subprocess.Popen(
        example_command("edge_app", "--brokers", broker.bootstrap_servers, "--topic", topic,
                        "--spool-dir", str(tmp_path), "--iterations", str(iterations), "--interval", "0.03",
                        "--status-every", "5", "--flush-timeout", "15"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=example_env(),
    )  # fmt: skip
    assert app.stdout is not None
    output = []
    try:
        for line in app.stdout:
            output.append(line)
            status = STATUS.match(line)
            if status is None:
                continue
            iteration, delivered = int(status[1]), int(status[2])
            if cut_at is None and iteration >= 10 and delivered > 0:  # connected first, then the outage
                proxy.cut()
                cut_at = iteration
            elif cut_at is not None and not proxy.listening and "broker_connected=False" in line:
                proxy.restore()  # the app has noticed the outage and kept tracking through it
        assert app.wait(timeout=30) == 0, "".join(output)
    finally:
        app.kill()
        proxy.restore()

    assert cut_at is not None, "the app never delivered before the outage:\n" + "".join(output)
    assert any("broker_connected=False" in line for line in output), "".join(output)
    assert output[-1].startswith("done, all delivered"), "".join(output)
    tracked = {event["metadata"]["iteration"] for event in topic_events(broker, topic, expected=iterations)}
    assert tracked == {str(n) for n in range(iterations)}


def test_edge_app_closes_cleanly_on_ctrl_c_and_loses_nothing(
    broker: EmbeddedBroker, topic: str, tmp_path: Path
) -> None:
    app = subprocess.Popen(
        example_command("edge_app", "--brokers", broker.bootstrap_servers, "--topic", topic,
                        "--spool-dir", str(tmp_path), "--iterations", "100000", "--interval", "0.02",
                        "--status-every", "5"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=example_env(),
    )  # fmt: skip
    assert app.stdout is not None
    try:
        first_line = app.stdout.readline()  # the first status line: the app is tracking
        assert STATUS.match(first_line), first_line
        app.send_signal(signal.SIGINT)
        output = app.communicate(timeout=15)[0]
    finally:
        app.kill()

    assert app.returncode == 130, output
    assert "interrupted, closing" in output
    assert "Traceback" not in output
    assert redeliver(tmp_path, broker, topic)  # whatever close() did not deliver was on disk
    tracked = sorted(int(event["metadata"]["iteration"]) for event in topic_events(broker, topic))
    assert tracked[0] == 0
    assert set(tracked) == set(range(tracked[-1] + 1)), "an iteration is missing"


@pytest.mark.parametrize("name", ["quickstart", "build_event"])
def test_self_contained_example_runs(name: str) -> None:
    result = subprocess.run(example_command(name), capture_output=True, text=True, timeout=120, env=example_env())
    assert result.returncode == 0, result.stderr
    if name == "quickstart":
        assert "flush() -> True, 100 delivered" in result.stdout
        assert "in the topic: 100 records" in result.stdout
    else:
        assert '"service_name": "checkout-assistant"' in result.stdout
        assert "field='prompt.tokens'" in result.stdout


# --- the instrumented integrations, against the fake provider server -----------------------------

openai_instrumented = load_example("openai_instrumented")


def llm_example_env(broker: EmbeddedBroker, topic: str, provider: Any, spool_dir: Path) -> dict[str, str]:
    return example_env() | {
        "SENTINEL_BROKERS": broker.bootstrap_servers,
        "SENTINEL_TOPIC": topic,
        "SENTINEL_SPOOL_DIR": str(spool_dir),
        "OPENAI_BASE_URL": provider.base_url,
        "OPENAI_API_KEY": "test-key",
    }


def check_llm_example_events(events: list[dict[str, Any]], service: str) -> None:
    from genai_helpers import ANSWER

    for event in events:
        assert event["service_name"] == service
        assert event["model"] == "gpt-4o-mini-2026-01-01"
        assert event["prompt"]["text"].endswith("What is Kafka?")
        assert event["response"]["text"] == ANSWER
        assert (event["prompt"]["tokens"], event["response"]["tokens"]) == (12, 7)
        assert event["latency_ms"] > 0


@pytest.mark.usefixtures("fresh_provider")
def test_openai_instrumented_tracks_the_call_and_the_stream(
    broker: EmbeddedBroker, topic: str, provider: Any, spool_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from genai_helpers import ANSWER

    for name, value in llm_example_env(broker, topic, provider, spool_dir).items():
        monkeypatch.setenv(name, value)
    assert openai_instrumented.main(["What is Kafka?"]) == 0
    assert capsys.readouterr().out.count(ANSWER) == 2
    events = topic_events(broker, topic, expected=2)
    assert len(events) == 2
    check_llm_example_events(events, "openai-example")
    assert events[0]["cost_usd"] == pytest.approx((12 * 0.00015 + 7 * 0.0006) / 1000)


@pytest.mark.usefixtures("fresh_provider")
def test_openai_instrumented_tracks_a_failed_call_with_its_error(
    broker: EmbeddedBroker, topic: str, provider: Any, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in llm_example_env(broker, topic, provider, spool_dir).items():
        monkeypatch.setenv(name, value)
    provider.fail(429, times=3)  # the first try and the client's two retries
    assert openai_instrumented.main(["What is Kafka?"]) == 1
    (event,) = topic_events(broker, topic, expected=1)
    assert event["response"]["finish_reason"] == "error"
    assert event["errors"][0].startswith("openai.RateLimitError: Error code: 429")


@pytest.mark.usefixtures("fresh_provider")
def test_otel_genai_exports_the_calls_span_as_an_event(
    broker: EmbeddedBroker, topic: str, provider: Any, spool_dir: Path
) -> None:
    # A process of its own: it instruments the openai library globally.
    env = llm_example_env(broker, topic, provider, spool_dir)
    result = subprocess.run(
        example_command("otel_genai", "What is Kafka?"), capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    (event,) = topic_events(broker, topic, expected=1)
    check_llm_example_events([event], "otel-example")
    assert len(event["trace_id"]) == 32
