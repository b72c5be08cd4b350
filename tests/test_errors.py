"""The error hierarchy of DESIGN §1: bases, context attributes, and pickling."""

from __future__ import annotations

import pickle

import pytest

import sentinel_durable as sentinel


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (sentinel.ValidationError("f", "m", 1), (ValueError,)),
        (sentinel.ConfigError("SENTINEL_X", "m", "v"), (ValueError,)),
        (sentinel.SendError("dead-lettered", retries=3, event_id="e"), ()),
        (sentinel.BrokerConnectionError("unreachable", brokers=["a:1"]), (ConnectionError,)),
        (sentinel.DeliveryTimeoutError("not acked", timeout=5.0, pending=2), (TimeoutError,)),
        (
            sentinel.BrokerUnreachableError("not acked", timeout=5.0, pending=1, brokers=["a:1"]),
            (TimeoutError, ConnectionError, sentinel.DeliveryTimeoutError, sentinel.BrokerConnectionError),
        ),
        (sentinel.SpoolFullError("full", spool_bytes=10, max_spool_bytes=10), ()),
        (sentinel.ClientClosedError("closed"), ()),
    ],
)
def test_every_error_is_a_sentinel_error_with_its_builtin_bases(
    error: sentinel.SentinelError, bases: tuple[type[BaseException], ...]
) -> None:
    assert isinstance(error, sentinel.SentinelError)
    for base in bases:
        assert isinstance(error, base)
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert str(clone) == str(error)
    assert vars(clone) == vars(error)


def test_validation_error_carries_field_message_value() -> None:
    error = sentinel.ValidationError("prompt.tokens", "must be >= 0", -1)
    assert (error.field, error.message, error.value) == ("prompt.tokens", "must be >= 0", -1)
    assert str(error) == "prompt.tokens: must be >= 0 (got -1)"


def test_validation_error_keeps_prompt_text_out_of_its_message() -> None:
    error = sentinel.ValidationError("prompt.text", "too long", "my secret prompt")
    assert "my secret prompt" not in str(error)
    assert error.value == "my secret prompt"


def test_validation_error_message_is_short_for_huge_values() -> None:
    assert len(str(sentinel.ValidationError("metadata.k", "bad", "v" * 10_000))) < 200


def test_send_error_carries_retries_event_id_and_cause() -> None:
    cause = OSError("record too large")
    try:
        try:
            raise cause
        except OSError as exc:
            raise sentinel.SendError("dead-lettered", retries=3, event_id="abc") from exc
    except sentinel.SendError as error:
        assert (error.retries, error.event_id, error.__cause__) == (3, "abc", cause)


def test_broker_connection_error_names_the_brokers() -> None:
    error = sentinel.BrokerConnectionError("no broker reachable", brokers=["k1:9092", "k2:9092"])
    assert error.brokers == ["k1:9092", "k2:9092"]
    assert "k1:9092" in str(error)


def test_error_module_documents_the_tree() -> None:
    from sentinel_durable import errors

    for name in errors.__all__:
        assert name in (errors.__doc__ or "")
