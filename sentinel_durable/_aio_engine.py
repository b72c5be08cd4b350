"""The threads behind ``AsyncClient``: its writer (every track/send/send_batch in call order,
many per transaction) and its wait pool, around one client core, all of one process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import copy
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from . import _fork
from ._timeout import left_until
from .core import ClientCore
from .records import SpoolRecord

__all__ = ["Engine", "Kind", "Request", "await_thread", "copied", "run_in_thread"]

logger = logging.getLogger("sentinel_durable.aio")

_T = TypeVar("_T")

#: Most requests the writer spools in one transaction.
_MAX_REQUESTS_PER_WRITE = 1000
#: Threads for waits (``send(wait=True)``, ``flush``) and ``stats``; more such calls queue,
#: and their timeouts count from the call, not from when a thread takes them.
_WAIT_WORKERS = 8

Kind = Literal["track", "event", "batch", "barrier"]


@dataclass(slots=True)
class Request:
    """One awaited call for the writer: ``track``, ``event`` (send), ``batch`` (send_batch) or ``barrier``."""

    kind: Kind
    payload: Any
    context: contextvars.Context
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


#: (request, result, error) for one request, sent back to its loop.
_Outcome = tuple[Request, Any, BaseException | None]
#: (request, event id, record to spool or None when before_send dropped the event).
_Prepared = tuple[Request, str, SpoolRecord | None]


class Engine:
    """An opened AsyncClient: the client core, its writer thread and its wait pool (all of one process)."""

    def __init__(self, core: ClientCore) -> None:
        self.core = core
        self.process = _fork.ProcessBound()  # inherited: AsyncClient makes a new engine
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
        self._queue: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._submitted = 0
        self._written = 0  # by the writer thread only, before it hands results back
        # A daemon: a client that is never closed must not keep the interpreter alive; the
        # exit hook still delivers what reached the spool.
        self._thread = threading.Thread(target=self._run, name="sentinel-durable-aio-writer", daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> None:
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

    def _write(self, requests: list[Request]) -> list[_Outcome]:
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

    def _prepare(self, request: Request) -> _Prepared:
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


def _failed(requests: list[Request], error: BaseException) -> list[_Outcome]:
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


def copied(container: Any) -> Any:
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


def run_in_thread(name: str, call: Callable[[], _T]) -> concurrent.futures.Future[_T]:
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


async def await_thread(name: str, call: Callable[[], _T]) -> _T:
    return await asyncio.wrap_future(run_in_thread(name, call))

