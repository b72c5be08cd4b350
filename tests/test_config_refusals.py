"""Configuration that can never work is refused when the Config is made, with an error that names the option
(or the variable) and says what to change; a bare number of seconds is a duration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import event_of_record_size, offline_client

import sentinel_durable as sentinel
from sentinel_durable.config import parse_duration

KAFKA_DEFAULT = 1_048_588
#: What docs/configuration.md promises a spool holds beyond one record of max_message_bytes.
SPOOL_HEADROOM = 64 << 10


def refused(name: str, **options: Any) -> sentinel.ConfigError:
    with pytest.raises(sentinel.ConfigError) as caught:
        sentinel.Config(**options)
    assert caught.value.name == name, str(caught.value)
    assert str(caught.value).startswith(name)
    return caught.value


def refused_env(variable: str, environ: dict[str, str]) -> sentinel.ConfigError:
    with pytest.raises(sentinel.ConfigError) as caught:
        sentinel.Config.from_env(environ)
    assert caught.value.name == variable, str(caught.value)
    return caught.value


# --- max_text_length: LLM-Sentinel's own limit -------------------------------------------------------------


def test_max_text_length_above_sentinels_limit_is_refused() -> None:
    error = refused("max_text_length", max_text_length=100_001)
    assert "100000" in error.message
    assert "Sentinel" in error.message
    assert sentinel.Config(max_text_length=100_000).max_text_length == 100_000
    error = refused_env("SENTINEL_MAX_TEXT_LENGTH", {"SENTINEL_MAX_TEXT_LENGTH": "250000"})
    assert "Sentinel" in error.message


# --- max_message_bytes: at most what librdkafka accepts ----------------------------------------------------


def test_max_message_bytes_above_librdkafkas_limit_is_refused() -> None:
    big = {"max_spool_bytes": 4 << 30}  # room for one record of the largest size
    error = refused("max_message_bytes", max_message_bytes=1_000_000_001, **big)
    assert "1_000_000_000" in error.message
    assert "librdkafka" in error.message
    assert sentinel.Config(max_message_bytes=1_000_000_000, **big).max_message_bytes == 1_000_000_000
    error = refused_env(
        "SENTINEL_MAX_MESSAGE_BYTES", {"SENTINEL_MAX_MESSAGE_BYTES": "1GiB", "SENTINEL_MAX_SPOOL_BYTES": "4GiB"}
    )
    assert "librdkafka" in error.message


# --- max_spool_bytes: room for one record of max_message_bytes ---------------------------------------------


def test_a_spool_smaller_than_one_max_size_record_is_refused() -> None:
    error = refused("max_spool_bytes", max_spool_bytes=1000)
    assert f"max_message_bytes + 64 KiB = {KAFKA_DEFAULT + SPOOL_HEADROOM}" in error.message
    refused("max_spool_bytes", max_spool_bytes=KAFKA_DEFAULT + SPOOL_HEADROOM - 1)
    refused_env("SENTINEL_MAX_SPOOL_BYTES", {"SENTINEL_MAX_SPOOL_BYTES": "1MiB"})


def test_a_smaller_max_message_bytes_allows_a_smaller_spool() -> None:
    config = sentinel.Config(max_spool_bytes=200_000, max_message_bytes=100_000)
    assert (config.max_spool_bytes, config.max_message_bytes) == (200_000, 100_000)
    refused("max_spool_bytes", max_spool_bytes=150_000, max_message_bytes=100_000)


def test_the_smallest_spool_allowed_takes_a_record_of_max_message_bytes(tmp_path: Path) -> None:
    """The floor is what it claims: one record as large as the send-time check allows fits, in every
    durability mode and with encryption (the overflow policy 'error' would say so at once if not)."""
    for durability, key in (("process", None), ("power", None), ("async", None), ("process", "00" * 32)):
        limit = 100_000
        client = offline_client(
            tmp_path / f"{durability}-{key is None}", max_message_bytes=limit, max_spool_bytes=limit + SPOOL_HEADROOM,
            overflow="error", durability=durability, encryption_key=key,
        )  # fmt: skip
        try:
            grown = event_of_record_size(limit)
            client.send(grown)
            with pytest.raises(sentinel.ValidationError):
                client.send(event_of_record_size(limit + 1))
            client.flush(timeout=0)
            stats = client.stats()
            assert stats.spooled + stats.in_flight == 1
            assert stats.dropped == {}
        finally:
            client.close(timeout=0)


# --- brokers need a port --------------------------------------------------------------------------------


@pytest.mark.parametrize("broker", ["localhost", "kafka-0.svc.local", "10.0.0.1", "[::1]"])
def test_a_broker_without_a_port_is_refused_like_a_bad_port(broker: str) -> None:
    error = refused("brokers.0", brokers=[broker])
    assert "host:port (a port from 1 to 65535 is required)" in error.message
    bad_port = refused("brokers.0", brokers=["localhost:99999"])
    assert bad_port.message == error.message.replace(repr(broker), repr("localhost:99999"))  # the same refusal
    refused_env("SENTINEL_BROKERS", {"SENTINEL_BROKERS": f"k1:9092,{broker}"})


# --- SASL credentials need a SASL protocol --------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
@pytest.mark.parametrize(
    ("options", "name"),
    [({"sasl_password": "hunter2"}, "sasl_password"), ({"sasl_username": "alice"}, "sasl_username"),
     ({"sasl_username": "alice", "sasl_password": "hunter2"}, "sasl_username")],
)  # fmt: skip
def test_sasl_credentials_without_a_sasl_protocol_are_refused_not_ignored(
    protocol: str, options: dict[str, Any], name: str
) -> None:
    error = refused(name, security_protocol=protocol, **options)
    assert f"security_protocol={protocol}" in error.message
    assert "SASL_PLAINTEXT or SASL_SSL" in error.message
    assert "hunter2" not in str(error) + repr(error)


def test_sasl_password_from_the_environment_without_sasl_is_refused_by_variable() -> None:
    error = refused_env("SENTINEL_SASL_PASSWORD", {"SENTINEL_SASL_PASSWORD": "hunter2"})
    assert "hunter2" not in str(error)
    assert error.value is None


# --- durations --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("5", 5.0), ("2.5", 2.5), ("0.25", 0.25), (".5", 0.5), ("+3", 3.0),
                                               ("10", 10.0), ("0", 0.0), ("+1s", 1.0)])  # fmt: skip
def test_a_bare_number_is_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_shutdown_timeout_5_from_the_environment_is_5_seconds() -> None:
    environ = {"SENTINEL_SHUTDOWN_TIMEOUT": "5", "SENTINEL_WRITE_TIMEOUT": "2.5", "SENTINEL_MAX_EVENT_AGE": "3600"}
    config = sentinel.Config.from_env(environ)
    assert (config.shutdown_timeout, config.write_timeout, config.max_event_age) == (5.0, 2.5, 3600.0)


@pytest.mark.parametrize("text", ["-1s", "-1", "-2.5", "-100ms", "-1m30s"])
def test_a_negative_duration_is_refused_as_negative(text: str) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(text)
    error = refused_env("SENTINEL_SHUTDOWN_TIMEOUT", {"SENTINEL_SHUTDOWN_TIMEOUT": text})
    assert "negative" in str(error)


@pytest.mark.parametrize("option", ["shutdown_timeout", "batch_timeout", "retry_backoff", "write_timeout"])
def test_a_negative_duration_in_python_is_refused_as_negative(option: str) -> None:
    assert "negative" in refused(option, **{option: -1}).message
