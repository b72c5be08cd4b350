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
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator
from pydantic import ValidationError as PydanticValidationError

from .crypto import SpoolCipher, parse_key
from .environment import ENV_VARIABLES, parse_duration, split_brokers
from .errors import ConfigError
from .event import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_TEXT_LENGTH, SENTINEL_MAX_TEXT_LENGTH, EventRules

__all__ = ["ENV_VARIABLES", "Config", "parse_duration"]

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
    brokers: Annotated[list[Broker], BeforeValidator(split_brokers), Field(min_length=1)] = ["localhost:9092"]
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
            if error["type"] in {"greater_than", "greater_than_equal"} and _negative(given):
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


def _negative(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0
