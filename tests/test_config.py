"""Config: every option of DESIGN §4, every SENTINEL_* variable read and refused by name, secrets hidden."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import sentinel_durable as sentinel
from sentinel_durable.config import ENV_VARIABLES, parse_duration

# Straight from DESIGN §4: the Go SDK's set, the durable ones, and Kafka security.
DESIGN_VARIABLES = {
    "BROKERS", "TOPIC", "MAX_RETRIES", "RETRY_BACKOFF", "MAX_RETRY_BACKOFF", "WRITE_TIMEOUT", "READ_TIMEOUT",
    "BATCH_SIZE", "BATCH_TIMEOUT", "COMPRESSION", "REQUIRE_ACKS", "ASYNC", "ENABLE_VALIDATION", "TRUNCATE_TEXT",
    "MAX_TEXT_LENGTH", "SPOOL_DIR", "DURABILITY", "MAX_SPOOL_BYTES", "OVERFLOW", "MAX_EVENT_AGE", "TRANSPORT",
    "SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD", "SSL_CAFILE", "SSL_CERTFILE",
    "SSL_KEYFILE",
}  # fmt: skip
DESIGN_OPTIONS = {
    "brokers", "topic", "max_retries", "retry_backoff", "max_retry_backoff", "write_timeout", "read_timeout",
    "batch_size", "batch_timeout", "compression", "require_acks", "async_mode", "enable_validation", "truncate_text",
    "max_text_length", "spool_dir", "durability", "max_spool_bytes", "overflow", "max_event_age", "transport",
    "partition_key", "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password", "ssl_cafile",
    "ssl_certfile", "ssl_keyfile",
}  # fmt: skip

A_FILE = Path(__file__)

# variable suffix -> (good value, option, expected value, bad value)
CASES: dict[str, tuple[str, str, Any, str]] = {
    "BROKERS": ("k1:9092, k2:9093", "brokers", ["k1:9092", "k2:9093"], "k1:9092,k2:notaport"),
    "TOPIC": ("llm.other", "topic", "llm.other", "has spaces"),
    "MAX_RETRIES": ("7", "max_retries", 7, "-1"),
    "RETRY_BACKOFF": ("250ms", "retry_backoff", 0.25, "fast"),
    "MAX_RETRY_BACKOFF": ("2m", "max_retry_backoff", 120.0, "10 s"),
    "WRITE_TIMEOUT": ("1h", "write_timeout", 3600.0, "0"),
    "READ_TIMEOUT": ("1m30s", "read_timeout", 90.0, "-5s"),
    "BATCH_SIZE": ("500", "batch_size", 500, "many"),
    "BATCH_TIMEOUT": ("5ms", "batch_timeout", 0.005, "5 ms"),
    "COMPRESSION": ("ZSTD", "compression", "zstd", "brotli"),
    "REQUIRE_ACKS": ("1", "require_acks", 1, "2"),
    "ASYNC": ("yes", "async_mode", True, "maybe"),
    "ENABLE_VALIDATION": ("0", "enable_validation", False, "nope"),
    "TRUNCATE_TEXT": ("false", "truncate_text", False, "2"),
    "MAX_TEXT_LENGTH": ("5000", "max_text_length", 5000, "0"),
    "MAX_MESSAGE_BYTES": ("512KiB", "max_message_bytes", 512 * 2**10, "huge"),
    "OTEL_TRACE_IDS": ("no", "otel_trace_ids", False, "sometimes"),
    "SPOOL_DIR": ("/tmp/sentinel-spool", "spool_dir", Path("/tmp/sentinel-spool"), str(A_FILE)),
    "DURABILITY": ("power", "durability", "power", "paranoid"),
    "MAX_SPOOL_BYTES": ("512MiB", "max_spool_bytes", 512 * 2**20, "lots"),
    "OVERFLOW": ("drop_oldest", "overflow", "drop_oldest", "explode"),
    "MAX_EVENT_AGE": ("24h", "max_event_age", 86400.0, "a day"),
    "TRANSPORT": ("confluent", "transport", "confluent", "carrier-pigeon"),
    "PARTITION_KEY": ("event_id", "partition_key", "event_id", "model"),
    "SHUTDOWN_TIMEOUT": ("500ms", "shutdown_timeout", 0.5, "soon"),
    "CLIENT_LIBRARY_LOGS": ("true", "client_library_logs", True, "maybe"),
    "SECURITY_PROTOCOL": ("ssl", "security_protocol", "SSL", "TLS"),
    "SASL_MECHANISM": ("GSSAPI", "sasl_mechanism", None, "KERBEROS"),  # needs SASL protocol: see below
    "SASL_USERNAME": ("alice", "sasl_username", "alice", "al\x01ice"),
    "SASL_PASSWORD": ("hunter2", "sasl_password", "hunter2", "hun\x00ter2"),
    "SSL_CAFILE": (str(A_FILE), "ssl_cafile", A_FILE, "/does/not/exist.pem"),
    "SSL_CERTFILE": (str(A_FILE), "ssl_certfile", A_FILE, "/does/not/exist.pem"),
    "SSL_KEYFILE": (str(A_FILE), "ssl_keyfile", A_FILE, "/does/not/exist.pem"),
    "SSL_PASSWORD": ("keypass", "ssl_password", "keypass", "key\npass"),
    "ENCRYPTION_KEY": ("00" * 32, "encryption_key", "00" * 32, "too-short"),
}


def test_every_design_variable_is_read() -> None:
    assert {f"SENTINEL_{name}" for name in DESIGN_VARIABLES} <= set(ENV_VARIABLES)
    assert set(ENV_VARIABLES) == {f"SENTINEL_{name}" for name in CASES}


def test_config_has_every_design_option() -> None:
    assert set(sentinel.Config.model_fields) >= DESIGN_OPTIONS


def test_defaults_match_the_go_sdk() -> None:
    config = sentinel.Config.from_env({})
    assert config.brokers == ["localhost:9092"]
    assert config.topic == "llm.telemetry"
    assert (config.max_retries, config.retry_backoff, config.max_retry_backoff) == (3, 0.1, 5.0)
    assert (config.write_timeout, config.read_timeout) == (10.0, 10.0)
    assert (config.batch_size, config.batch_timeout) == (0, 0.0)
    assert (config.compression, config.require_acks, config.async_mode) == ("snappy", -1, False)
    assert (config.enable_validation, config.truncate_text, config.max_text_length) == (True, True, 100_000)
    assert config == sentinel.Config()


# The SASL variables only make sense together (a SASL_* protocol): read in the test below.
@pytest.mark.parametrize("suffix", [s for s in CASES if s not in {"SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD"}])
def test_each_variable_is_read(suffix: str) -> None:
    good, option, expected, _ = CASES[suffix]
    value = getattr(sentinel.Config.from_env({f"SENTINEL_{suffix}": good}), option)
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    assert value == expected


def test_sasl_variables_are_read_together() -> None:
    config = sentinel.Config.from_env(
        {
            "SENTINEL_SECURITY_PROTOCOL": "SASL_SSL",
            "SENTINEL_SASL_MECHANISM": "scram-sha-512",
            "SENTINEL_SASL_USERNAME": "alice",
            "SENTINEL_SASL_PASSWORD": "hunter2",
        }
    )
    assert (config.security_protocol, config.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert config.sasl_password is not None
    assert config.sasl_password.get_secret_value() == "hunter2"


@pytest.mark.parametrize("suffix", sorted(CASES))
def test_bad_value_of_each_variable_is_refused_by_name(suffix: str) -> None:
    _, option, _, bad = CASES[suffix]
    environ = {f"SENTINEL_{suffix}": bad}
    if suffix == "SASL_MECHANISM":
        environ.update(SENTINEL_SECURITY_PROTOCOL="SASL_PLAINTEXT", SENTINEL_SASL_USERNAME="u")
        environ.update(SENTINEL_SASL_PASSWORD="p")
    with pytest.raises(sentinel.ConfigError) as caught:
        sentinel.Config.from_env(environ)
    error = caught.value
    assert error.name == f"SENTINEL_{suffix}", str(error)
    assert f"SENTINEL_{suffix}" in str(error)
    if option in {"sasl_password", "ssl_password", "encryption_key"}:
        assert bad not in str(error)
        assert error.value is None
    else:
        assert error.value == bad.strip()
        assert repr(bad.strip()) in str(error)


def test_config_error_is_a_value_error_and_a_sentinel_error() -> None:
    with pytest.raises(ValueError, match="retry_backoff"):
        sentinel.Config(retry_backoff=-1)
    assert issubclass(sentinel.ConfigError, sentinel.SentinelError)


def test_empty_variables_keep_defaults() -> None:
    assert sentinel.Config.from_env({"SENTINEL_TOPIC": "", "SENTINEL_MAX_RETRIES": "  "}) == sentinel.Config()


def test_overrides_win_over_the_environment() -> None:
    assert sentinel.Config.from_env({"SENTINEL_TOPIC": "a"}, topic="b").topic == "b"


def test_unknown_sentinel_variable_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sentinel_durable"):
        sentinel.Config.from_env({"SENTINEL_BROKER": "x:1"})
    assert "SENTINEL_BROKER" in caplog.text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("100ms", 0.1), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5), ("1h2m3s", 3723.0),
     ("250us", 0.00025), ("10ns", 1e-8)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5 s", "1d", "1h-2m", "ms5", "--1s", "5e3", "inf", "nan"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_unknown_option_is_refused_by_name() -> None:
    with pytest.raises(sentinel.ConfigError) as caught:
        sentinel.Config(broker=["x:1"])
    assert caught.value.name == "broker"


def test_brokers_as_a_comma_separated_string() -> None:
    assert sentinel.Config(brokers="a:1, b:2").brokers == ["a:1", "b:2"]


@pytest.mark.parametrize("broker", ["localhost:9092", "10.0.0.1:29092", "[::1]:9092", "kafka-0.svc.local:1"])
def test_broker_forms_accepted(broker: str) -> None:
    assert sentinel.Config(brokers=[broker]).brokers == [broker]


@pytest.mark.parametrize(
    "broker", ["", "host:0", "host:70000", "host:port", "a b:1", "http://x:1", "localhost", "[::1]", "host:"]
)
def test_broker_forms_refused(broker: str) -> None:
    with pytest.raises(sentinel.ConfigError, match="brokers"):
        sentinel.Config(brokers=[broker])


def test_async_mode_is_the_async_durability() -> None:
    assert sentinel.Config(async_mode=True).durability == "async"
    assert sentinel.Config(durability="async").async_mode is True
    with pytest.raises(sentinel.ConfigError) as caught:
        sentinel.Config(async_mode=True, durability="power")
    assert caught.value.name == "durability"


def test_backoff_cap_below_start_is_refused() -> None:
    with pytest.raises(sentinel.ConfigError) as caught:
        sentinel.Config(retry_backoff=10, max_retry_backoff=1)
    assert caught.value.name == "max_retry_backoff"


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"security_protocol": "SASL_SSL"}, "sasl_mechanism"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_password": "p"}, "sasl_username"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"}, "sasl_password"),
        ({"sasl_mechanism": "PLAIN"}, "sasl_mechanism"),
    ],
)
def test_inconsistent_sasl_settings_are_refused(options: dict[str, Any], name: str) -> None:
    with pytest.raises(sentinel.ConfigError) as caught:
        sentinel.Config(**options)
    assert caught.value.name == name


def test_config_is_immutable() -> None:
    config = sentinel.Config()
    with pytest.raises(ValueError, match="frozen"):
        config.topic = "other"  # type: ignore[misc]


def test_default_spool_dir_is_per_user_and_per_topic() -> None:
    path = sentinel.Config(topic="llm.x").spool_directory()
    assert path.name == "llm.x"
    assert "sentinel-durable" in path.parts
    assert sentinel.Config(spool_dir="/data/spool").spool_directory() == Path("/data/spool")


def test_event_rules_follow_the_config() -> None:
    rules = sentinel.Config(max_text_length=9, truncate_text=False, enable_validation=False).event_rules
    assert (rules.max_text_length, rules.truncate_text, rules.enable_validation) == (9, False, False)


SECRET = "s3cr3t-Pa55word"


def test_secrets_never_appear_in_repr_str_or_dumps(caplog: pytest.LogCaptureFixture) -> None:
    config = sentinel.Config(
        security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password=SECRET,
        ssl_password=SECRET,
    )  # fmt: skip
    with caplog.at_level(logging.DEBUG, logger="sentinel_durable"):
        logging.getLogger("sentinel_durable").info("config: %s %r", config, config)
    for text in (repr(config), str(config), config.model_dump_json(), caplog.text, format(config)):
        assert SECRET not in text
    assert config.sasl_password is not None
    assert config.sasl_password.get_secret_value() == SECRET


@pytest.mark.parametrize("bad", [123, "bad\x00" + SECRET])
def test_secrets_never_appear_in_errors(bad: Any) -> None:
    with pytest.raises(sentinel.ConfigError) as caught:
        sentinel.Config(sasl_password=bad)
    error = caught.value
    assert caught.value.name == "sasl_password"
    shown = str(error) + repr(error) + repr(error.__cause__) + repr(error.__context__)
    assert SECRET not in shown
    assert "123" not in shown
    assert error.value is None


def test_secret_from_environment_never_appears_in_errors() -> None:
    environ = {"SENTINEL_SASL_PASSWORD": SECRET, "SENTINEL_SASL_MECHANISM": "PLAIN"}
    with pytest.raises(sentinel.ConfigError) as caught:
        sentinel.Config.from_env(environ)
    assert SECRET not in str(caught.value) + repr(caught.value.__context__)


def test_configuration_doc_lists_every_option_and_variable() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    for option in sentinel.Config.model_fields:
        assert f"`{option}`" in doc, option
    for variable in ENV_VARIABLES:
        assert f"`{variable}`" in doc, variable
