"""``AsyncClient``: the client for asyncio code, with the same methods as ``Client``, awaitable.

Nothing here blocks the event loop. The loop only packs a call into a request and awaits
its future; the work runs on threads of the client's own:

* one **writer** thread takes every ``track``, ``send`` and ``send_batch`` request in call
  order. It checks each ``track`` / ``send`` event and runs ``before_send`` on it on its own
  (a bad event fails only its own await), then spools the events of everything queued in
  one transaction, so 10,000 concurrent awaits cost a handful of commits, not 10,000
  threads or 10,000 fsyncs;
* a small **wait pool** runs what blocks for delivery (``send(wait=True)``, ``flush``) and
  ``stats``, so a long wait never holds up the writer;
* the client core (``core.py``, the one ``Client`` is a facade of: it makes the spool
  directory and opens SQLite) is created on a one-off thread by :meth:`AsyncClient.open`,
  ``async with`` or the first call; ``AsyncClient(...)`` itself only checks the configuration.

Each request runs in a copy of the caller's ``contextvars`` context, so whatever reads
context (a current tracing span) sees the caller's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from ._aio_engine import Engine, Kind, Request, await_thread, copied, run_in_thread
from ._timeout import WRITE_TIMEOUT, WriteTimeout, check_timeout, deadline_of, left_until, send_timeout
from .client import config_of
from .config import Config
from .core import BeforeSend, ClientCore, warn_about_compression
from .errors import ClientClosedError, SendError
from .event import TelemetryEvent
from .fields import TrackFields, check_track_fields
from .stats import Counter, Stats

if TYPE_CHECKING:
    from .integrations.genai import Prices
    from .integrations.observe import Observation

__all__ = ["AsyncClient"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_L = TypeVar("_L")  # the LLM client given to instrument()


class AsyncClient:
    """Sends LLM telemetry from asyncio code, with ``Client``'s rules (the same client core underneath).

    ``AsyncClient(brokers=[...], topic=...)`` or ``AsyncClient(config=Config(...))``, as for
    ``Client``. Construction is cheap and only checks the options (``ConfigError``); the
    spool is opened off the loop by :meth:`open`, ``async with``, or the first call::

        async with AsyncClient(brokers=["localhost:9092"], topic="llm.telemetry") as client:
            await client.track(service="svc", model="gpt-4", prompt="...", response="...", latency_ms=150.5)

    The guarantees are ``Client``'s: an await of ``track``, ``send`` or ``send_batch`` returns
    once the events are in the spool. Cancelling such an await does not take the event back:
    it may still be spooled and delivered.
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
        """The hooks are ``Client``'s. ``before_send`` runs on the writer thread (on a wait
        thread for ``send(wait=True)``), in the caller's context; ``on_delivery`` and
        ``on_error`` on the flusher thread: to reach the loop from them, use
        ``loop.call_soon_threadsafe``."""
        self._config = config_of(config, options)
        warn_about_compression(self._config)
        self._capture_errors = Counter()  # the core's, before it exists (see integrations.capture)
        self._hooks: dict[str, Any] = {
            "before_send": before_send, "on_delivery": on_delivery, "on_error": on_error, "adopt_topic": adopt_topic,
            "capture_errors": self._capture_errors,
        }  # fmt: skip
        self._lock = threading.Lock()  # guards _closed, _opening and the enqueueing of requests
        self._closed = False
        self._opening: concurrent.futures.Future[Engine] | None = None
        self._engine: Engine | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> AsyncClient:
        """A client configured from ``SENTINEL_*`` variables (see ``Config.from_env``); cheap, not awaited."""
        return cls(config=Config.from_env(environ, **overrides))

    @property
    def config(self) -> Config:
        return self._config

    @property
    def closed(self) -> bool:
        return self._closed

    # -- opening ---------------------------------------------------------------------------------

    async def open(self) -> AsyncClient:
        """Create the client core (spool directory, SQLite file, flusher) off the loop.

        Optional: ``async with`` and the first call do it. Raises what ``Client(...)`` raises
        (``ConfigError`` for an unusable spool directory or a missing codec library); a failed
        open is tried again by the next call.
        """
        await self._opened()
        return self

    async def _opened(self) -> Engine:
        engine = self._engine
        if engine is not None and not engine.process.inherited and not self._closed:
            return engine
        with self._lock:
            if self._closed:
                raise ClientClosedError("the client is closed")
            engine = self._engine
            if engine is not None and engine.process.inherited:
                # First use in a forked child: the parent's writer and pool threads do not
                # exist here. The core restarts its own flusher on its next call.
                engine = self._engine = Engine(engine.core)
            if engine is not None:
                return engine
            opening = self._opening
            if opening is None or (opening.done() and (opening.cancelled() or opening.exception() is not None)):
                opening = self._opening = run_in_thread("sentinel-durable-aio-open", self._open_engine)
        # Shielded: a caller cancelled while the spool opens must not cancel the open for the others.
        return await asyncio.shield(asyncio.wrap_future(opening))

    def _open_engine(self) -> Engine:
        engine = Engine(ClientCore(self._config, **self._hooks))
        self._engine = engine
        return engine

    # -- sending ---------------------------------------------------------------------------------

    async def track(self, **fields: Unpack[TrackFields]) -> str:
        """Record one LLM call, as ``Client.track`` (the same keywords); returns the event id once spooled.

        ``ValidationError`` names a bad field; nothing is spooled then.
        """
        check_track_fields(fields)
        # Only the caller's containers are copied here (it may change them once this
        # coroutine yields); the event is built and checked on the writer thread.
        arguments = {name: copied(value) for name, value in fields.items()}
        event_id: str = await self._write("track", arguments)
        return event_id

    async def send(
        self, event: TelemetryEvent, *, wait: bool = False, timeout: float | WriteTimeout | None = WRITE_TIMEOUT
    ) -> str:
        """Spool ``event`` (checked again against this client's rules); returns its id.

        With ``wait=True`` return only once Kafka acked it, as ``Client.send``:
        ``DeliveryTimeoutError`` after ``timeout`` seconds from this call (default
        ``write_timeout``, ``None``: no limit), with a ``BrokerConnectionError`` as its cause when
        no broker is reachable; ``SendError`` if it was dead-lettered; ``ClientClosedError`` if the
        client is closed while it waits (and the other endings of ``Client.send``). The event stays
        spooled on a timeout and on a close.
        """
        if not wait:
            event_id: str = await self._write("event", event)
            return event_id
        limit = send_timeout(timeout, self._config.write_timeout)
        deadline = deadline_of(limit)

        def send_and_wait(core: ClientCore) -> str:
            return core.send(event, wait=True, limit=left_until(deadline))

        return await self._in_wait_pool(send_and_wait)

    async def send_batch(self, events: Iterable[TelemetryEvent]) -> list[str]:
        """Spool every event in one transaction, or none, as ``Client.send_batch``."""
        ids: list[str] = await self._write("batch", list(events))
        return ids

    async def _write(self, kind: Kind, payload: Any) -> Any:
        engine = self._engine
        if engine is None or engine.process.inherited:  # the fast path skips a coroutine: this runs per event
            engine = await self._opened()
        loop = asyncio.get_running_loop()
        request = Request(kind, payload, contextvars.copy_context(), loop.create_future(), loop)
        with self._lock:  # close() enqueues its stop under this lock: nothing is queued behind it
            if self._closed:
                raise ClientClosedError("the client is closed")
            engine.writer.submit(request)
        return await request.future

    # -- waiting ---------------------------------------------------------------------------------

    async def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every event pending for this client's topic when called is delivered, as
        ``Client.flush`` (its own file and the orphans of its topic it adopts, never another topic's).

        Sends of this client that started before the call (not yet awaited to the end)
        count too. True when all were acked; False on timeout (``None``: no limit), or once
        one of them is dead-lettered or dropped.
        """
        timeout = check_timeout("timeout", timeout)
        deadline = deadline_of(timeout)
        engine = await self._opened()
        if engine.writer.busy:
            try:
                async with asyncio.timeout(timeout):
                    await self._write("barrier", None)  # the writer got through every earlier request
            except TimeoutError:
                return False
        return await self._in_wait_pool(lambda core: core.flush(left_until(deadline)))

    async def stats(self) -> Stats:
        """Counters since the client started and gauges now, as ``Client.stats`` (read off the loop).

        After ``close()``, the figures as it closed.
        """
        engine = self._engine
        if self._closed and engine is not None:
            return await await_thread("sentinel-durable-aio-stats", engine.core.stats)
        return await self._in_wait_pool(lambda core: core.stats())

    async def _in_wait_pool(self, call: Callable[[ClientCore], _T]) -> _T:
        engine = await self._opened()
        context = contextvars.copy_context()
        with self._lock:
            if self._closed:
                raise ClientClosedError("the client is closed")
            future = engine.waits.submit(context.run, call, engine.core)
        return await asyncio.wrap_future(future)

    # -- lifecycle -------------------------------------------------------------------------------

    async def close(self, timeout: float | None = 5.0) -> None:
        """Stop accepting events, spool what was already sent, then close as ``Client.close(timeout)``.

        Delivers what it can within ``timeout`` (``None``: no limit) and keeps the rest on disk;
        never raises because events are undelivered. Closing twice is harmless.
        """
        deadline = deadline_of(check_timeout("timeout", timeout))
        with self._lock:
            if self._closed:
                return
            self._closed = True
            opening = self._opening
        if opening is None:
            return  # never opened: nothing to release
        try:
            await asyncio.shield(asyncio.wrap_future(opening))
        except Exception:
            return  # the open failed: there is no client to close
        engine = self._engine  # in a forked child, the child's engine
        if engine is not None:
            await await_thread("sentinel-durable-aio-close", lambda: engine.close(deadline))

    async def __aenter__(self) -> AsyncClient:
        return await self.open()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    def instrument(
        self,
        llm_client: _L,
        *,
        service: str,
        capture_content: bool = True,
        prices: Prices | None = None,
        **defaults: Any,
    ) -> _L:
        """Track every call of ``llm_client`` through this client, as ``Client.instrument`` (the
        same options; docs/integrations.md). Await an async LLM client's calls as usual."""
        from .integrations.instrument import instrument

        return instrument(self, llm_client, service=service, capture_content=capture_content, prices=prices, **defaults)

    def observe(self, *, service: str, model: str, prompt: str | None = None, **fields: Any) -> Observation:
        """An :class:`~sentinel_durable.observe.Observation` of one LLM call, tracked through this client.

        Use it with ``async with`` or as a decorator of an ``async def`` function.
        """
        from .integrations.observe import Observation

        return Observation(self, service=service, model=model, prompt=prompt, **fields)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._engine is not None else "not opened")
        return f"<AsyncClient topic={self._config.topic!r} brokers={self._config.brokers!r} {state}>"
