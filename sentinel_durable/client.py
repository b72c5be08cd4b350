"""``Client``: what the caller's threads touch, a facade over the client core (``core.py``).

``send`` validates, serialises and writes to the spool, then returns; it never waits for
Kafka (unless asked with ``wait=True``) and never touches the network. The flusher thread
(``flusher.py``) does the rest. Open clients are closed at interpreter exit, and in
multiprocessing workers when the worker ends (``_fork.at_worker_exit``).
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from . import _fork
from ._timeout import WRITE_TIMEOUT, WriteTimeout, send_timeout
from .config import Config
from .core import BeforeSend, ClientCore, warn_about_compression
from .errors import ConfigError, SendError
from .event import TelemetryEvent
from .fields import TrackFields, check_track_fields
from .stats import Stats

if TYPE_CHECKING:
    from .integrations.genai import Prices
    from .integrations.observe import Observation

__all__ = ["Client"]

_L = TypeVar("_L")  # the LLM client given to instrument()

logger = logging.getLogger(__name__)

#: Open clients, held strongly: a client dropped without close() keeps delivering from its
#: flusher thread, and the exit hook still gives it its shutdown_timeout.
_LIVE_CLIENTS: set[Client] = set()


def config_of(config: Config | None, options: Mapping[str, Any]) -> Config:
    """``config=`` or options, not both (both clients take either)."""
    if config is not None and options:
        raise ConfigError("config", f"pass config= or options ({', '.join(sorted(options))}), not both")
    return config if config is not None else Config(**options)


class Client:
    """Sends LLM telemetry to LLM-Sentinel through an on-disk spool and a background flusher.

    ``Client(brokers=[...], topic=...)`` takes every option of :class:`Config`, or
    ``Client(config=Config(...))``. Creating a client never touches the network.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        before_send: BeforeSend | None = None,
        on_delivery: Callable[[list[str]], object] | None = None,
        on_error: Callable[[SendError], object] | None = None,
        adopt_topic: str | None = None,
        **options: Any,
    ) -> None:
        """``before_send(event)`` runs on the caller's thread before an event is spooled and may
        return it changed (it is checked again) or ``None`` to drop it (counted in
        ``stats().dropped["before_send"]``). ``on_delivery(event_ids)`` and ``on_error(SendError)``
        run on the flusher thread after each batch is acked and for each dead letter; keep them
        quick. An exception in them is logged and counted, and does not stop delivery.

        ``adopt_topic`` (an operator's re-route, what ``sentinel-durable drain --topic`` uses):
        deliver the spool files recorded for that topic, instead of this client's own, to ``topic``."""
        resolved = config_of(config, options)
        warn_about_compression(resolved)
        self._core = ClientCore(
            resolved, before_send=before_send, on_delivery=on_delivery, on_error=on_error, adopt_topic=adopt_topic
        )
        self._capture_errors = self._core.capture_errors  # what the integrations could not track
        _LIVE_CLIENTS.add(self)
        _fork.at_worker_exit(_close_all_at_exit)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Client:
        """A client configured from ``SENTINEL_*`` variables (see ``Config.from_env``)."""
        return cls(config=Config.from_env(environ, **overrides))

    @property
    def config(self) -> Config:
        return self._core.config

    # -- sending ---------------------------------------------------------------------------------

    def track(self, **fields: Unpack[TrackFields]) -> str:
        """Record one LLM call (the Go SDK's ``Track``); returns the event id once spooled.

        Keywords: ``service``, ``model``, ``prompt``, ``response``, ``latency_ms`` (required);
        ``prompt_tokens``, ``completion_tokens`` (0), ``cost_usd`` (0.0), ``finish_reason``
        ("stop"), ``trace_id``, ``span_id`` (the current OpenTelemetry span's when
        ``otel_trace_ids`` is on), ``metadata``, ``errors``, ``prompt_embedding``,
        ``response_embedding``. ``ValidationError`` names a bad field; nothing is spooled then.
        """
        check_track_fields(fields)
        return self._core.track(fields)

    def instrument(
        self,
        llm_client: _L,
        *,
        service: str,
        capture_content: bool = True,
        prices: Prices | None = None,
        **defaults: Any,
    ) -> _L:
        """Track every call of ``llm_client`` (``openai.OpenAI``/``AsyncOpenAI``, ``anthropic.Anthropic``/
        ``AsyncAnthropic``) through this client; returns ``llm_client`` itself, instrumented.

        Each ``chat.completions.create``, ``responses.create``, ``messages.create`` and
        ``messages.stream`` call tracks one event: the response's model, the prompt (see
        docs/integrations.md for its text), the response text, tokens, finish reason, latency, and
        the API's exception in ``errors`` (re-raised unchanged). A stream's event is tracked when
        it ends, is closed, or fails. ``capture_content=False`` leaves the text out; ``prices``
        (model -> USD per 1,000 input and output tokens, or a callable) sets the cost; ``defaults``
        are ``metadata``, ``cost_usd``, ``finish_reason``, ``trace_id``, ``span_id``. Telemetry
        never breaks a call: what cannot be tracked is counted in ``stats().capture_errors``.
        """
        from .integrations.instrument import instrument

        return instrument(self, llm_client, service=service, capture_content=capture_content, prices=prices, **defaults)

    def observe(self, *, service: str, model: str, prompt: str | None = None, **fields: Any) -> Observation:
        """An :class:`~sentinel_durable.observe.Observation` of one LLM call, tracked through this client.

        A context manager (``with``, or ``async with``) and a decorator (plain and ``async def``
        functions) that measures the latency, records an exception as an error, and tracks one
        event on exit. ``fields`` are further ``track`` keywords (``prompt_tokens``, ``metadata``...).
        """
        from .integrations.observe import Observation

        return Observation(self, service=service, model=model, prompt=prompt, **fields)

    def send(
        self, event: TelemetryEvent, *, wait: bool = False, timeout: float | WriteTimeout | None = WRITE_TIMEOUT
    ) -> str:
        """Spool ``event`` (checked again against this client's rules); returns its id.

        With ``wait=True`` return only once Kafka acked it (the Go SDK's synchronous
        ``Send``): ``DeliveryTimeoutError`` after ``timeout`` seconds (default ``write_timeout``;
        ``None`` waits without limit). Its message says why when it is known: the deployment refuses
        the events (an ACL, a missing topic, a refused login), or no broker is reachable — then it is a
        ``BrokerUnreachableError`` (also a ``BrokerConnectionError``) and its ``__cause__`` a
        ``BrokerConnectionError`` naming the brokers and the reason. ``SendError``
        if it was dead-lettered or dropped for its age (``max_event_age``), ``SpoolFullError`` if
        ``overflow="drop_oldest"`` dropped it, ``ClientClosedError`` if the client is closed while
        it waits. The event stays spooled on a timeout and on a close.
        """
        limit = send_timeout(timeout, self._core.config.write_timeout)
        return self._core.send(event, wait=wait, limit=limit)

    def send_batch(self, events: Iterable[TelemetryEvent]) -> list[str]:
        """Spool every event in one transaction, or none: one invalid event refuses the batch.

        Returns the ids of the events spooled (those ``before_send`` kept), in order."""
        return self._core.send_batch(events)

    # -- waiting -------------------------------------------------------------------------------

    def flush(self, timeout: float | None = 5.0, *, progress: Callable[[int, int], None] | None = None) -> bool:
        """Wait until every event pending for this client's topic when called is delivered.

        That is this client's spool file and the files of the spool directory it adopts: those
        left by dead processes or closed clients that record this topic (or no topic). Files
        recorded for another topic are never adopted or waited for. Returns True when all were
        acked by Kafka; False on timeout (``None``: no limit), or once one of them is
        dead-lettered or dropped. ``progress(settled, total)``, if given, is called as batches
        settle (at most twice a second).
        """
        return self._core.flush(timeout, progress)

    def stats(self) -> Stats:
        """Counters since the client started and gauges now; after ``close()``, as it closed."""
        return self._core.stats()

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop accepting events, deliver what can be delivered within ``timeout`` (``None``: no
        limit), keep the rest on disk.

        Never raises because events are undelivered, and releases the spool files within
        the timeout even if a broker connection hangs. When no broker is reachable (known
        before or during the close), it returns at once: the events stay on disk, and one log
        line says how many.
        """
        if self._core.close(timeout):
            _LIVE_CLIENTS.discard(self)

    @property
    def closed(self) -> bool:
        return self._core.closed

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Client topic={self.config.topic!r} brokers={self.config.brokers!r} {state}>"


def _close_all_at_exit() -> None:
    for client in list(_LIVE_CLIENTS):
        if client._core.inherited:
            continue  # inherited across fork and never used here: this process has nothing of it to close
        try:
            client.close(timeout=client.config.shutdown_timeout)
        except Exception:
            logger.exception("closing a client at exit failed")


atexit.register(_close_all_at_exit)
