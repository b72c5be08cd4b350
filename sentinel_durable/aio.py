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
import copy
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Unpack

from . import _fork
from ._timeout import WRITE_TIMEOUT, WriteTimeout, check_timeout, deadline_of, left_until, send_timeout
from .client import config_of
from .config import Config
from .core import BeforeSend, ClientCore, warn_about_compression
from .errors import ClientClosedError, SendError
from .event import TelemetryEvent
from .fields import TrackFields, check_track_fields
from .records import SpoolRecord
from .stats import Stats

if TYPE_CHECKING:
    from .integrations.observe import Observation

__all__ = ["AsyncClient"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Most requests the writer spools in one transaction.
_MAX_REQUESTS_PER_WRITE = 1000
#: Threads for waits (``send(wait=True)``, ``flush``) and ``stats``; more such calls queue,
#: and their timeouts count from the call, not from when a thread takes them.
_WAIT_WORKERS = 8


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
        self._hooks: dict[str, Any] = {
            "before_send": before_send, "on_delivery": on_delivery, "on_error": on_error, "adopt_topic": adopt_topic,
        }  # fmt: skip
        self._lock = threading.Lock()  # guards _closed, _opening and the enqueueing of requests
        self._closed = False
        self._opening: concurrent.futures.Future[_Engine] | None = None
        self._engine: _Engine | None = None

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

    async def _opened(self) -> _Engine:
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
                engine = self._engine = _Engine(engine.core)
            if engine is not None:
                return engine
            opening = self._opening
            if opening is None or (opening.done() and (opening.cancelled() or opening.exception() is not None)):
                opening = self._opening = _run_in_thread("sentinel-durable-aio-open", self._open_engine)
        # Shielded: a caller cancelled while the spool opens must not cancel the open for the others.
        return await asyncio.shield(asyncio.wrap_future(opening))

    def _open_engine(self) -> _Engine:
        engine = _Engine(ClientCore(self._config, **self._hooks))
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
        arguments = {name: _copied(value) for name, value in fields.items()}
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

    async def _write(self, kind: _Kind, payload: Any) -> Any:
        engine = self._engine
        if engine is None or engine.process.inherited:  # the fast path skips a coroutine: this runs per event
            engine = await self._opened()
        loop = asyncio.get_running_loop()
        request = _Request(kind, payload, contextvars.copy_context(), loop.create_future(), loop)
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
            return await _await_thread("sentinel-durable-aio-stats", engine.core.stats)
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
            await _await_thread("sentinel-durable-aio-close", lambda: engine.close(deadline))

    async def __aenter__(self) -> AsyncClient:
        return await self.open()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    def observe(self, *, service: str, model: str, prompt: str | None = None, **fields: Any) -> Observation:
        """An :class:`~sentinel_durable.observe.Observation` of one LLM call, tracked through this client.

        Use it with ``async with`` or as a decorator of an ``async def`` function.
        """
        from .integrations.observe import Observation

        return Observation(self, service=service, model=model, prompt=prompt, **fields)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._engine is not None else "not opened")
        return f"<AsyncClient topic={self._config.topic!r} brokers={self._config.brokers!r} {state}>"


# -- the threads ---------------------------------------------------------------------------------

_Kind = Literal["track", "event", "batch", "barrier"]


@dataclass(slots=True)
class _Request:
    """One awaited call for the writer: ``track``, ``event`` (send), ``batch`` (send_batch) or ``barrier``."""

    kind: _Kind
    payload: Any
    context: contextvars.Context
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


#: (request, result, error) for one request, sent back to its loop.
_Outcome = tuple[_Request, Any, BaseException | None]
#: (request, event id, record to spool or None when before_send dropped the event).
_Prepared = tuple[_Request, str, SpoolRecord | None]


class _Engine:
    """An opened AsyncClient: the client core, its writer thread and its wait pool (all of one process)."""

    def __init__(self, core: ClientCore) -> None:
        self.core = core
        self.process = _fork.ProcessBound()
        self.writer = _Writer(core)
        self.waits = concurrent.futures.ThreadPoolExecutor(
            _WAIT_WORKERS, thread_name_prefix="sentinel-durable-aio-wait"
        )

    def close(self, deadline: float) -> None:
        """Spool what is queued, close the core by ``deadline``; runs off the loop."""
        if self.process.inherited:  # a forked child closing before any call: our threads are the parent's
            self.core.close(left_until(deadline))
            return
        if not self.writer.stop(left_until(deadline)):
            # Closing the core below closes the spool: what the writer still holds gets
            # ClientClosedError instead of hanging.
            logger.info("closing while the spool still takes queued events; the rest are refused")
        self.core.close(left_until(deadline))
        self.waits.shutdown(wait=False)


class _Writer:
    """The thread that spools requests in call order, many per transaction.

    It stops at the ``None`` queued by :meth:`stop`, after every request queued before it
    (AsyncClient queues nothing once closed, under its lock). Each event is checked and passed
    through ``before_send`` by the core's ``prepare_*``, the rules ``Client`` follows; then the
    records of consecutive ``track``/``send`` requests are spooled in one ``spool_records``.
    """

    def __init__(self, core: ClientCore) -> None:
        self._core = core
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._submitted = 0
        self._written = 0  # by the writer thread only, before it hands results back
        # A daemon: a client that is never closed must not keep the interpreter alive; the
        # exit hook still delivers what reached the spool.
        self._thread = threading.Thread(target=self._run, name="sentinel-durable-aio-writer", daemon=True)
        self._thread.start()

    def submit(self, request: _Request) -> None:
        self._submitted += 1  # callers hold AsyncClient's lock
        self._queue.put(request)

    @property
    def busy(self) -> bool:
        """Whether requests are queued or being written."""
        return self._written < self._submitted

    def stop(self, timeout: float | None) -> bool:
        """Finish what is queued, then end; True if the thread ended within ``timeout``."""
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            requests = [first]
            stopping = False
            while len(requests) < _MAX_REQUESTS_PER_WRITE:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                if request is None:
                    stopping = True
                    break
                requests.append(request)
            try:
                outcomes = self._write(requests)
            except BaseException as exc:  # never leave an await hanging
                logger.exception("the async writer failed on %d requests", len(requests))
                outcomes = _failed(requests, exc)
            self._written += len(requests)
            _settle(outcomes)
            if stopping:
                return

    def _write(self, requests: list[_Request]) -> list[_Outcome]:
        core = self._core
        try:
            core.ensure_usable()  # closed, or the first use in a forked child
        except Exception as exc:
            return _failed(requests, exc)
        outcomes: list[_Outcome] = []
        prepared: list[_Prepared] = []
        for request in requests:
            if request.kind in ("track", "event"):
                try:
                    prepared.append(request.context.run(self._prepare, request))
                except Exception as exc:  # ValidationError, or before_send raised: this request's alone
                    outcomes.append((request, None, exc))
                continue
            # A batch or a barrier: everything before it is spooled first, to keep call order.
            outcomes.extend(self._spool(prepared))
            prepared = []
            if request.kind == "batch":
                try:
                    outcomes.append((request, request.context.run(core.send_batch, request.payload), None))
                except Exception as exc:
                    outcomes.append((request, None, exc))
            else:
                outcomes.append((request, None, None))
        outcomes.extend(self._spool(prepared))
        return outcomes

    def _prepare(self, request: _Request) -> _Prepared:
        if request.kind == "track":
            return (request, *self._core.prepare_fields(request.payload))
        return (request, *self._core.prepare_event(request.payload))

    def _spool(self, prepared: list[_Prepared]) -> list[_Outcome]:
        if not prepared:
            return []
        try:
            self._core.spool_records([record for _, _, record in prepared if record is not None])
        except Exception as exc:  # ClientClosedError, SpoolFullError...: every request of the write gets it
            return _failed([request for request, _, _ in prepared], exc)
        return [(request, event_id, None) for request, event_id, _ in prepared]


def _failed(requests: list[_Request], error: BaseException) -> list[_Outcome]:
    """``error`` for every request: the first gets it, the others copies (one instance raised in
    many tasks would collect every task's traceback)."""
    outcomes: list[_Outcome] = [(request, None, error) for request in requests[:1]]
    for request in requests[1:]:
        try:
            clone = copy.copy(error)
        except Exception:
            clone = error
        else:
            clone.__cause__ = error.__cause__
            clone.__suppress_context__ = error.__suppress_context__
            clone.__traceback__ = error.__traceback__
        outcomes.append((request, None, clone))
    return outcomes


def _copied(container: Any) -> Any:
    if container is None:
        return None
    if isinstance(container, Mapping):
        return dict(container)
    return list(container) if isinstance(container, list | tuple) else container


def _settle(outcomes: list[_Outcome]) -> None:
    """Hand outcomes to their loops: one wake-up per loop per write, not one per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, group in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, group)
        except RuntimeError:  # the loop is closed: nobody awaits these any more
            logger.debug("dropping %d results for a closed event loop", len(group))


def _resolve(outcomes: list[_Outcome]) -> None:
    for request, result, error in outcomes:
        if request.future.done():  # the await was cancelled
            continue
        if error is not None:
            request.future.set_exception(error)
        else:
            request.future.set_result(result)


def _run_in_thread(name: str, call: Callable[[], _T]) -> concurrent.futures.Future[_T]:
    """Run ``call`` on a new thread named ``name``; its result or error lands in the future."""
    future: concurrent.futures.Future[_T] = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(call())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


async def _await_thread(name: str, call: Callable[[], _T]) -> _T:
    return await asyncio.wrap_future(_run_in_thread(name, call))
