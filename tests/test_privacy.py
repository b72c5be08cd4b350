"""Prompt, response, metadata and error text never appear in an error message, a repr or a log line.

Every bad-input case below carries a marker in its prompt, response, metadata and error text (and, for
configuration, in its secrets). Each case must fail with our error, and the marker must appear nowhere in
what a user would see of it: ``str`` and ``repr`` of the exception and of every exception chained to it,
the formatted traceback, and every log record of every logger at DEBUG. The marker is made at run time, so
that the source lines a traceback quotes never hold it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import capture_everything, everything_logged, free_port, shown, valid_fields

import sentinel_durable as sentinel
from sentinel_durable.event import EventRules, validate_event

#: Short, and first in each text: an error that shows the start of a value (a repr cut at 80 characters) shows it.
MARKER = "pv" + secrets.token_hex(4)


def private_fields(**overrides: Any) -> dict[str, Any]:
    """A valid event's fields with the marker in every piece of user content."""
    private = {
        "prompt": {"text": f"{MARKER} is my SSN", "tokens": 1},
        "response": {"text": f"{MARKER} noted", "tokens": 1, "finish_reason": "stop"},
        "metadata": {"user": f"{MARKER}@example.com"},
        "errors": [f"{MARKER} failed"],
    }
    return valid_fields(**{**private, **overrides})


def private_builder(rules: Any = None) -> sentinel.EventBuilder:
    return (
        sentinel.EventBuilder(rules).service("svc").model("gpt-4").prompt(f"{MARKER} is my SSN", 1)
        .response(f"{MARKER} noted", 1, "stop").latency(1).add_metadata("user", f"{MARKER}@example.com")
        .add_error(f"{MARKER} failed")
    )  # fmt: skip


def private_track(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "service": "svc", "model": "gpt-4", "prompt": f"{MARKER} is my SSN", "response": f"{MARKER} noted",
        "latency_ms": 1.0, "metadata": {"user": f"{MARKER}@example.com"}, "errors": [f"{MARKER} failed"],
    }  # fmt: skip
    arguments.update(overrides)
    return arguments


def _builder_cases() -> dict[str, Callable[[sentinel.Client], object]]:
    return {
        # The issue's case is every field but the cost; the cost now defaults to 0.0: a missing latency instead.
        "builder: missing latency": lambda _: (
            sentinel.EventBuilder()
            .service("s")
            .model("m")
            .prompt(f"{MARKER} is my SSN", 1)
            .response("ok", 1, "stop")
            .build()
        ),
        "builder: missing response": lambda _: (
            sentinel.EventBuilder().service("s").model("m").prompt(f"{MARKER} is my SSN", 1).latency(1).build()
        ),
        "builder: missing service": lambda _: private_builder().service(None).build(),  # type: ignore[arg-type]
        "builder: negative tokens": lambda _: private_builder().prompt(f"{MARKER} is my SSN", -1).build(),
        "builder: negative latency": lambda _: private_builder().latency(-1).build(),
        "builder: text over the limit": lambda _: private_builder(
            EventRules(max_text_length=15, truncate_text=False)
        ).build(),
        "builder: prompt of the wrong type": lambda _: private_builder().prompt([MARKER], 1).build(),  # type: ignore[arg-type]
        "builder: metadata value not a string": lambda _: private_builder().add_metadata("n", 5).build(),  # type: ignore[arg-type]
        "builder: metadata key not a string": lambda _: private_builder().add_metadata(5, MARKER).build(),  # type: ignore[arg-type]
        "builder: metadata not a mapping": lambda _: (
            private_builder()
            .metadata([MARKER])
            .add_metadata("k", "v")  # type: ignore[arg-type]
            .build()
        ),
        "builder: metadata value with a lone surrogate": lambda _: (
            private_builder().add_metadata("user", MARKER + "\ud800").build()
        ),
        "builder: errors not a list": lambda _: private_builder().errors(MARKER).build(),  # type: ignore[arg-type]
        "builder: embedding of text": lambda _: private_builder().prompt_with_embedding(MARKER, 1, [MARKER]).build(),
        "builder: record too large": lambda _: private_builder().add_metadata("blob", MARKER * 200_000).build(),
    }


def _client_cases() -> dict[str, Callable[[sentinel.Client], object]]:
    return {
        "track: negative latency": lambda c: c.track(**private_track(latency_ms=-1)),
        "track: negative cost": lambda c: c.track(**private_track(cost_usd=-0.5)),
        "track: empty service": lambda c: c.track(**private_track(service="")),
        "track: tokens as text": lambda c: c.track(**private_track(prompt_tokens=MARKER)),
        "track: metadata value not a string": lambda c: c.track(**private_track(metadata={"k": [MARKER]})),
        "track: record too large": lambda c: c.track(**private_track(metadata={"blob": MARKER * 200_000})),
        "send: dict missing the cost and latency": lambda c: c.send(  # type: ignore[arg-type]
            {k: v for k, v in private_fields().items() if k not in ("cost_usd", "latency_ms")}
        ),
        "send: dict with negative latency": lambda c: c.send(private_fields(latency_ms=-1)),  # type: ignore[arg-type]
        "send: dict with an unknown field": lambda c: c.send(private_fields(colour=MARKER)),  # type: ignore[arg-type]
        "send and wait: dict missing the model": lambda c: c.send(  # type: ignore[arg-type]
            {k: v for k, v in private_fields().items() if k != "model"}, wait=True, timeout=1
        ),
        "send: event changed after build": lambda c: c.send(_changed_after_build()),
        "send_batch: one bad event": lambda c: c.send_batch(
            [private_builder().build(), private_fields(latency_ms=-1)]  # type: ignore[list-item]
        ),
        "send_batch: one missing the response": lambda c: c.send_batch(
            [{k: v for k, v in private_fields().items() if k != "response"}]  # type: ignore[list-item]
        ),
    }


def _changed_after_build() -> sentinel.TelemetryEvent:
    event = private_builder().build()
    event.prompt.tokens = -5
    return event


def _constructor_cases() -> dict[str, Callable[[sentinel.Client], object]]:
    return {
        "TelemetryEvent(...) missing the latency": lambda _: sentinel.TelemetryEvent(  # type: ignore[call-arg]
            **{k: v for k, v in private_fields().items() if k != "latency_ms"}
        ),
        "TelemetryEvent(...) with negative cost": lambda _: sentinel.TelemetryEvent(**private_fields(cost_usd=-1)),
        "PromptInfo(...) with bad tokens": lambda _: sentinel.PromptInfo(text=MARKER, tokens=-1),
        "ResponseInfo(...) missing the finish reason": lambda _: sentinel.ResponseInfo(text=MARKER, tokens=1),  # type: ignore[call-arg]
        "validate_event: missing the model": lambda _: validate_event(
            {k: v for k, v in private_fields().items() if k != "model"}
        ),
        "from_json: negative latency": lambda _: sentinel.TelemetryEvent.from_json(
            private_builder().build().to_json().replace(b'"latency_ms":1.0', b'"latency_ms":-1.0')
        ),
        "from_json: truncated document": lambda _: sentinel.TelemetryEvent.from_json(
            private_builder().build().to_json()[:-40]
        ),
    }


def _config_cases() -> dict[str, Callable[[sentinel.Client], object]]:
    return {
        "Config: password without SASL": lambda _: sentinel.Config(sasl_password=MARKER),
        "Config: username without SASL": lambda _: sentinel.Config(sasl_username="u", sasl_password=MARKER),
        "Config: SASL without a username": lambda _: sentinel.Config(
            security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_password=MARKER
        ),
        "Config: password with a control character": lambda _: sentinel.Config(sasl_password=MARKER + "\x00"),
        "Config.from_env: password without SASL": lambda _: sentinel.Config.from_env(
            {"SENTINEL_SASL_PASSWORD": MARKER}
        ),
        "Config: bad encryption key": lambda _: sentinel.Config(encryption_key=MARKER),
    }


CASES = {**_builder_cases(), **_client_cases(), **_constructor_cases(), **_config_cases()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_never_shows_user_text(case: str, offline: sentinel.Client, caplog: pytest.LogCaptureFixture) -> None:
    capture_everything(caplog)
    # ValidationError, ConfigError, or pydantic's own (a model constructed directly): all ValueErrors.
    with pytest.raises(ValueError) as caught:  # noqa: PT011
        CASES[case](offline)
    text = shown(caught.value)
    assert MARKER not in text, f"{case}: {text}"
    assert MARKER not in everything_logged(caplog), case


def test_every_case_fails_with_a_clear_error_naming_the_field(offline: sentinel.Client) -> None:
    for case in sorted(_builder_cases()) + sorted(_client_cases()):
        with pytest.raises(sentinel.ValidationError) as caught:
            CASES[case](offline)
        assert caught.value.field, case
        assert str(caught.value).startswith(caught.value.field), case


def test_the_issues_builder_case_now_builds_with_a_zero_cost() -> None:
    event = (sentinel.EventBuilder().service("s").model("m").prompt(f"{MARKER} is my SSN", 1)
             .response("ok", 1, "stop").latency(1).build())  # fmt: skip
    assert event.cost_usd == 0.0


def test_a_missing_field_names_the_field_and_nothing_else() -> None:
    with pytest.raises(sentinel.ValidationError) as caught:
        private_builder().service(None).latency(None).build()  # type: ignore[arg-type]
    assert str(caught.value) == "service_name: Input should be a valid string (got None)"
    fields = {k: v for k, v in private_fields().items() if k != "latency_ms"}
    with pytest.raises(sentinel.ValidationError) as caught:
        validate_event(fields)
    assert str(caught.value) == "latency_ms: is required"


def test_errors_name_the_type_and_size_of_user_content() -> None:
    with pytest.raises(sentinel.ValidationError) as caught:
        private_builder().add_metadata("blob", 12345).build()  # type: ignore[arg-type]
    assert str(caught.value) == "metadata.blob: Input should be a valid string (got int)"
    with pytest.raises(sentinel.ValidationError) as caught:
        private_builder().prompt(["a", "b", MARKER], 1).build()  # type: ignore[arg-type]
    assert str(caught.value) == "prompt.text: Input should be a valid string (got list of 3 items)"
    with pytest.raises(sentinel.ValidationError) as caught:
        validate_event(private_fields(prompt={"text": MARKER * 2, "tokens": 1}), EventRules(10, truncate_text=False))
    assert str(caught.value) == (
        "prompt.text: is 20 characters, over max_text_length=10 (truncate_text is off) (got str of 20 characters)"
    )


def test_names_and_numbers_are_still_shown() -> None:
    with pytest.raises(sentinel.ValidationError) as caught:
        private_builder().latency(-2.5).build()
    assert "(got -2.5)" in str(caught.value)
    with pytest.raises(sentinel.ValidationError) as caught:
        private_builder().event_id("not-a-uuid").build()
    assert "(got 'not-a-uuid')" in str(caught.value)


@pytest.mark.parametrize(
    "shows", [repr, str, lambda event: f"{event}", lambda event: repr(event.prompt), lambda event: str(event.response)]
)
def test_event_reprs_show_sizes_not_text(shows: Callable[[sentinel.TelemetryEvent], str]) -> None:
    event = private_builder().build()
    text = shows(event)
    assert MARKER not in text
    assert "svc" in text or "characters" in text


def test_event_repr_names_every_field_and_the_sizes() -> None:
    event = private_builder().prompt_with_embedding(f"{MARKER} is my SSN", 1, [0.5, 0.25]).build()
    text = repr(event)
    for part in ("service_name='svc'", "model='gpt-4'", "latency_ms=1.0", "cost_usd=0.0",
                 "prompt=PromptInfo(text=<str of 20 characters>, tokens=1, embedding=<list of 2 items>)",
                 "finish_reason='stop'", "metadata=<dict of 1 item>", "errors=<list of 1 item>"):  # fmt: skip
        assert part in text, text


def test_builder_repr_shows_no_text() -> None:
    text = repr(private_builder().prompt_with_embedding(MARKER, 3, [0.1]))
    assert MARKER not in text
    assert "tokens=3" in text
    assert "embedding" in text


def test_async_client_errors_show_no_user_text(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    capture_everything(caplog)

    async def scenario() -> list[BaseException]:
        errors: list[BaseException] = []
        options = {"brokers": [f"127.0.0.1:{free_port()}"], "topic": "privacy", "spool_dir": tmp_path / "spool"}
        async with sentinel.AsyncClient(**options) as client:
            for attempt in (
                client.track(**private_track(latency_ms=-1)),
                client.send(private_fields(cost_usd=-1)),  # type: ignore[arg-type]
                client.send_batch([private_fields(model=None)]),  # type: ignore[list-item]
            ):
                try:
                    await attempt
                except sentinel.ValidationError as exc:
                    errors.append(exc)
        return errors

    errors = asyncio.run(scenario())
    assert len(errors) == 3
    for error in errors:
        assert MARKER not in shown(error)
    assert MARKER not in everything_logged(caplog)


def test_an_observation_that_cannot_be_tracked_logs_no_user_text(
    offline: sentinel.Client, caplog: pytest.LogCaptureFixture
) -> None:
    capture_everything(caplog)
    with (
        pytest.raises(RuntimeError),
        offline.observe(service="svc", model="m", prompt=f"{MARKER} is my SSN", metadata={"k": [MARKER]}),
    ):
        raise RuntimeError("the model call failed")
    assert "could not track" in caplog.text  # the failure is logged, with its traceback...
    assert MARKER not in everything_logged(caplog)  # ...and without the prompt or the metadata
