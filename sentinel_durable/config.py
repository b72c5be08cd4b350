"""Configuration: every option of the client in one pydantic model, and its environment form.

``Config(**options)`` takes the snake_case forms of the Go SDK's options plus the durable
ones; ``Config.from_env()`` reads the ``SENTINEL_*`` variables. Durations are float seconds
in Python and ``100ms`` / ``5s`` / ``2m`` / ``1h`` in the environment. Any bad value raises
:class:`~sentinel_durable.ConfigError` naming the option or variable; secrets are
``SecretStr`` and never appear in ``repr``, logs or errors.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator
from pydantic import ValidationError as PydanticValidationError

from .crypto import SpoolCipher, parse_key
from .errors import ConfigError
from .event import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_TEXT_LENGTH, SENTINEL_MAX_TEXT_LENGTH, EventRules

__all__ = ["ENV_VARIABLES", "Config"]

logger = logging.getLogger(__name__)

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
Durability = Literal["process", "power", "async"]
Overflow = Literal["block", "drop_oldest", "drop_newest", "error"]
Transport = Literal["kafka-python", "confluent"]
PartitionKey = Literal["service_name", "event_id", "none"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

#: Options whose values are never shown.
SECRET_FIELDS = frozenset({"sasl_password", "ssl_password", "encryption_key"})

_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_BROKER = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[^\s:\[\]/]+):(?P<port>\d{1,5})")
#: Room a spool needs beyond one record of max_message_bytes: the file's own pages (12 KiB
#: when empty), the row and index overhead and the pages a commit may add (spool.GROWTH_SLACK).
SPOOL_HEADROOM = 64 << 10


def _split_brokers(value: Any) -> Any:
    # "a:9092,b:9092" is a common way to write a broker list; accept it as the list it means.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _check_broker(value: str) -> str:
    match = _BROKER.fullmatch(value)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"broker {value!r} is not host:port (a port from 1 to 65535 is required)")
    return value


def _check_topic(value: str) -> str:
    if not _TOPIC.fullmatch(value) or value in {".", ".."}:
        raise ValueError("a Kafka topic is 1-249 characters of a-z, A-Z, 0-9, '.', '_' and '-'")
    return value


def _no_control_characters(value: str) -> str:
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError("contains a control character")
    return value


def _secret_without_control_characters(value: SecretStr) -> SecretStr:
    _no_control_characters(value.get_secret_value())
    return value


def _not_a_file(value: Path) -> Path:
    if value.is_file():
        raise ValueError("is a file, not a directory")
    return value


def _within_sentinel_text_limit(value: int) -> int:
    if value > SENTINEL_MAX_TEXT_LENGTH:
        raise ValueError(
            f"is over {SENTINEL_MAX_TEXT_LENGTH}, the limit LLM-Sentinel's event type declares for prompt and"
            " response text: longer text would be dropped by its ingestion"
        )
    return value


#: librdkafka refuses a message.max.bytes (which the producers are given) above this.
MAX_MESSAGE_BYTES_LIMIT = 1_000_000_000


def _within_producer_limit(value: int) -> int:
    if value > MAX_MESSAGE_BYTES_LIMIT:
        raise ValueError(
            f"is over {MAX_MESSAGE_BYTES_LIMIT:_}, the largest message.max.bytes librdkafka accepts (the producers"
            " are given this limit): set it to your topic's max.message.bytes"
        )
    return value


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


Broker = Annotated[str, BeforeValidator(_strip), AfterValidator(_check_broker)]
Topic = Annotated[str, AfterValidator(_check_topic)]
Credential = Annotated[str, AfterValidator(_no_control_characters)]
Secret = Annotated[SecretStr, AfterValidator(_secret_without_control_characters)]
Directory = Annotated[Path, AfterValidator(_not_a_file)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Config(BaseModel):
    """Every option of a client. Immutable once built; unknown options are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True, validate_default=True)

    # --- the Go SDK's options -----------------------------------------------------
    brokers: Annotated[list[Broker], BeforeValidator(_split_brokers), Field(min_length=1)] = ["localhost:9092"]
    topic: Topic = "llm.telemetry"
    max_retries: Annotated[int, Field(ge=0)] = 3
    """Attempts before a record that fails for a non-retriable reason is dead-lettered."""
    retry_backoff: PositiveSeconds = 0.1
    max_retry_backoff: PositiveSeconds = 5.0
    write_timeout: PositiveSeconds = 10.0
    read_timeout: PositiveSeconds = 10.0
    batch_size: Annotated[int, Field(ge=0)] = 0
    """Records per Kafka batch; 0 keeps the transport's default batching."""
    batch_timeout: Seconds = 0.0
    compression: Compression = "snappy"
    require_acks: Literal[-1, 0, 1] = -1
    async_mode: bool = False
    """The Go SDK's ``WithAsync``: the same as ``durability="async"``."""
    enable_validation: bool = True
    truncate_text: bool = True
    max_text_length: Annotated[int, Field(gt=0), AfterValidator(_within_sentinel_text_limit)] = DEFAULT_MAX_TEXT_LENGTH
    """Characters allowed in prompt and response text: 1 to 100000 (LLM-Sentinel's own limit)."""
    max_message_bytes: Annotated[int, Field(ge=1024), AfterValidator(_within_producer_limit)] = (
        DEFAULT_MAX_MESSAGE_BYTES
    )
    """Largest Kafka record (value, key and headers) an event may make; larger ones are refused at send time.
    1024 to 1,000,000,000 (librdkafka's own limit)."""
    otel_trace_ids: bool = True
    """Fill ``trace_id``/``span_id`` from the current OpenTelemetry span when the caller set neither."""

    # --- durability ---------------------------------------------------------------
    spool_dir: Directory | None = None
    """Where spool files live; ``None`` is the user's state directory, one sub-directory per topic."""
    durability: Durability = "process"
    max_spool_bytes: Annotated[int, Field(gt=0)] = 1 << 30
    overflow: Overflow = "block"
    max_event_age: PositiveSeconds | None = None
    """Pending events older than this are dropped (and counted); ``None`` keeps them forever."""
    transport: Transport = "kafka-python"
    partition_key: PartitionKey = "service_name"
    shutdown_timeout: Seconds | None = 2.0
    """How long the exit hook may spend delivering before the process ends (``None``: no limit); the
    rest stays on disk."""
    client_library_logs: bool = False
    """Let kafka-python's / librdkafka's own log lines about this client's connections through (by
    default an outage is one WARNING of ``sentinel_durable`` and nothing from the Kafka library)."""

    # --- Kafka security -------------------------------------------------------------
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: Credential | None = None
    sasl_password: Secret | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: Secret | None = None
    """Password of ``ssl_keyfile``, when the key is encrypted."""

    # --- data at rest ---------------------------------------------------------------
    encryption_key: Secret | None = None
    """AES key (16/24/32 bytes as hex or base64) to encrypt spooled event bodies; needs ``[encryption]``."""

    def __init__(self, **options: Any) -> None:
        try:
            super().__init__(**options)
        except PydanticValidationError as exc:
            error = exc.errors(include_url=False)[0]
            name = ".".join(str(part) for part in error["loc"]) or "config"
            field = name.split(".")[0]
            message = "is not an option of Config" if error["type"] == "extra_forbidden" else error["msg"]
            message = message.removeprefix("Value error, ")
            given = error.get("input")
            if error["type"] in {"greater_than", "greater_than_equal"} and _is_negative(given):
                message = f"is negative: {message[0].lower()}{message[1:]}"
            raise ConfigError(name, message, given, secret=field in SECRET_FIELDS) from None
        self._check_consistency()

    @model_validator(mode="before")
    @classmethod
    def _async_mode_is_durability(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if data.get("async_mode") and "durability" not in data:
                data = {**data, "durability": "async"}
            elif data.get("durability") == "async" and "async_mode" not in data:
                data = {**data, "async_mode": True}
        return data

    def _check_consistency(self) -> None:
        # Rules across options; each error names the option to change.
        if self.async_mode != (self.durability == "async"):
            raise ConfigError("durability", f"contradicts async_mode={self.async_mode}", self.durability)
        if self.max_retry_backoff < self.retry_backoff:
            raise ConfigError(
                "max_retry_backoff", f"is below retry_backoff={self.retry_backoff}", self.max_retry_backoff
            )
        uses_sasl = self.security_protocol.startswith("SASL_")
        if uses_sasl and self.sasl_mechanism is None:
            raise ConfigError("sasl_mechanism", f"is required with security_protocol={self.security_protocol}")
        if uses_sasl and self.sasl_username is None:
            raise ConfigError("sasl_username", f"is required with sasl_mechanism={self.sasl_mechanism}")
        if uses_sasl and self.sasl_password is None:
            raise ConfigError("sasl_password", f"is required with sasl_mechanism={self.sasl_mechanism}", secret=True)
        if not uses_sasl and self.sasl_mechanism is not None:
            raise ConfigError(
                "sasl_mechanism",
                f"is set but security_protocol={self.security_protocol} does not use SASL",
                self.sasl_mechanism,
            )
        if not uses_sasl and self.sasl_username is not None:
            raise ConfigError(
                "sasl_username",
                f"is set but security_protocol={self.security_protocol} does not use SASL (it would be ignored);"
                " use SASL_PLAINTEXT or SASL_SSL",
                self.sasl_username,
            )
        if not uses_sasl and self.sasl_password is not None:
            raise ConfigError(
                "sasl_password",
                f"is set but security_protocol={self.security_protocol} does not use SASL (it would be ignored);"
                " use SASL_PLAINTEXT or SASL_SSL",
                secret=True,
            )
        if self.max_spool_bytes < self.max_message_bytes + SPOOL_HEADROOM:
            raise ConfigError(
                "max_spool_bytes",
                f"is below max_message_bytes + 64 KiB = {self.max_message_bytes + SPOOL_HEADROOM}: a spool this"
                " small could not hold one record of the largest size; raise it or lower max_message_bytes",
                self.max_spool_bytes,
            )
        for option in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, option)
            if path is not None and not path.is_file():
                raise ConfigError(option, "no such file", str(path))
        if self.encryption_key is not None:
            try:
                parse_key(self.encryption_key.get_secret_value())
            except ValueError as exc:
                raise ConfigError("encryption_key", str(exc), secret=True) from None
            if importlib.util.find_spec("cryptography") is None:
                raise ConfigError("encryption_key", "needs: pip install 'sentinel-durable[encryption]'", secret=True)

    @property
    def event_rules(self) -> EventRules:
        """The validation settings that events sent with this configuration are checked against."""
        return EventRules(
            max_text_length=self.max_text_length,
            truncate_text=self.truncate_text,
            enable_validation=self.enable_validation,
            otel_trace_ids=self.otel_trace_ids,
            max_message_bytes=self.max_message_bytes,
        )

    def spool_cipher(self) -> SpoolCipher | None:
        """The cipher that seals spooled bodies, when ``encryption_key`` is set."""
        if self.encryption_key is None:
            return None
        return SpoolCipher(parse_key(self.encryption_key.get_secret_value()))

    def spool_directory(self) -> Path:
        """The directory that holds this configuration's spool files."""
        if self.spool_dir is not None:
            return self.spool_dir
        return platformdirs.user_state_path("sentinel-durable", appauthor=False) / self.topic

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build a configuration from ``SENTINEL_*`` variables (``os.environ`` by default).

        Unset or empty variables keep their defaults; ``overrides`` win over the
        environment. A bad value raises ``ConfigError`` naming the variable.
        """
        environ = os.environ if environ is None else environ
        options: dict[str, Any] = {}
        source: dict[str, str] = {}
        for variable, (option, parse) in ENV_VARIABLES.items():
            raw = environ.get(variable, "").strip()
            if not raw:
                continue
            try:
                options[option] = parse(raw)
            except ValueError as exc:
                raise ConfigError(variable, str(exc), raw, secret=option in SECRET_FIELDS) from None
            source[option] = variable
        unknown = sorted(name for name in environ if name.startswith("SENTINEL_") and name not in ENV_VARIABLES)
        if unknown:
            logger.warning("ignoring unknown environment variables: %s", ", ".join(unknown))
        options.update(overrides)
        try:
            return cls(**options)
        except ConfigError as exc:
            option = exc.name.split(".")[0]
            from_variable = source.get(option) if option not in overrides else None
            if from_variable is None:
                raise
            raw = environ[from_variable].strip()
            raise ConfigError(from_variable, exc.message, raw, secret=option in SECRET_FIELDS) from None


# --- environment value parsers ------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"(\d+)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


_PLAIN_SECONDS = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration(text: str) -> float:
    """``"100ms"`` -> 0.1, ``"1m30s"`` -> 90.0 (Go's ``time.ParseDuration`` units); a bare number
    is seconds (``"5"`` -> 5.0, ``"2.5"`` -> 2.5). A negative duration is refused as such."""
    sign, body = (text[0], text[1:]) if text[:1] in ("+", "-") else ("", text)
    seconds = float(body) if _PLAIN_SECONDS.fullmatch(body) else _unit_duration(body)
    if sign == "-" and seconds:
        raise ValueError("is negative: a duration must be 0 or more, like 100ms, 5s or 5")
    return seconds


def _unit_duration(text: str) -> float:
    position, seconds = 0, 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            break
        seconds += float(match[1]) * _DURATION_UNITS[match[2]]
        position = match.end()
    if position == 0 or position != len(text):
        raise ValueError("not a duration: use seconds (5, 2.5) or a number and a unit, like 100ms, 5s, 2m or 1h")
    return seconds


def _is_negative(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("not a boolean: use true/false, 1/0 or yes/no")


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("not an integer") from None


def _parse_size(text: str) -> int:
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError("not a size: use bytes, optionally with a unit like 512MiB or 1GB")
    return int(match[1]) * _SIZE_UNITS[(match[2] or "").lower()]


def _parse_optional_duration(text: str) -> float | None:
    seconds = parse_duration(text)
    return seconds or None  # 0 means "never"


def _parse_optional_str(text: str) -> str:
    return text


#: Every variable ``Config.from_env`` reads: name -> (option, parser).
ENV_VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "SENTINEL_BROKERS": ("brokers", _split_brokers),
    "SENTINEL_TOPIC": ("topic", _parse_optional_str),
    "SENTINEL_MAX_RETRIES": ("max_retries", _parse_int),
    "SENTINEL_RETRY_BACKOFF": ("retry_backoff", parse_duration),
    "SENTINEL_MAX_RETRY_BACKOFF": ("max_retry_backoff", parse_duration),
    "SENTINEL_WRITE_TIMEOUT": ("write_timeout", parse_duration),
    "SENTINEL_READ_TIMEOUT": ("read_timeout", parse_duration),
    "SENTINEL_BATCH_SIZE": ("batch_size", _parse_int),
    "SENTINEL_BATCH_TIMEOUT": ("batch_timeout", parse_duration),
    "SENTINEL_COMPRESSION": ("compression", str.lower),
    "SENTINEL_REQUIRE_ACKS": ("require_acks", _parse_int),
    "SENTINEL_ASYNC": ("async_mode", _parse_bool),
    "SENTINEL_ENABLE_VALIDATION": ("enable_validation", _parse_bool),
    "SENTINEL_TRUNCATE_TEXT": ("truncate_text", _parse_bool),
    "SENTINEL_MAX_TEXT_LENGTH": ("max_text_length", _parse_int),
    "SENTINEL_MAX_MESSAGE_BYTES": ("max_message_bytes", _parse_size),
    "SENTINEL_OTEL_TRACE_IDS": ("otel_trace_ids", _parse_bool),
    "SENTINEL_SPOOL_DIR": ("spool_dir", Path),
    "SENTINEL_DURABILITY": ("durability", str.lower),
    "SENTINEL_MAX_SPOOL_BYTES": ("max_spool_bytes", _parse_size),
    "SENTINEL_OVERFLOW": ("overflow", str.lower),
    "SENTINEL_MAX_EVENT_AGE": ("max_event_age", _parse_optional_duration),
    "SENTINEL_TRANSPORT": ("transport", str.lower),
    "SENTINEL_PARTITION_KEY": ("partition_key", str.lower),
    "SENTINEL_SHUTDOWN_TIMEOUT": ("shutdown_timeout", parse_duration),
    "SENTINEL_CLIENT_LIBRARY_LOGS": ("client_library_logs", _parse_bool),
    "SENTINEL_SECURITY_PROTOCOL": ("security_protocol", str.upper),
    "SENTINEL_SASL_MECHANISM": ("sasl_mechanism", str.upper),
    "SENTINEL_SASL_USERNAME": ("sasl_username", _parse_optional_str),
    "SENTINEL_SASL_PASSWORD": ("sasl_password", _parse_optional_str),
    "SENTINEL_SSL_CAFILE": ("ssl_cafile", Path),
    "SENTINEL_SSL_CERTFILE": ("ssl_certfile", Path),
    "SENTINEL_SSL_KEYFILE": ("ssl_keyfile", Path),
    "SENTINEL_SSL_PASSWORD": ("ssl_password", _parse_optional_str),
    "SENTINEL_ENCRYPTION_KEY": ("encryption_key", _parse_optional_str),
}
