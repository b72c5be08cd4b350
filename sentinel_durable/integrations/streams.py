"""The streams an instrumented client returns: the library's own stream, seen through a proxy
that reads each chunk into the call and tracks the event when the stream ends, is closed, or fails.

A proxy passes ``isinstance`` for the library's class, forwards every other attribute, and
gives the caller the very chunk objects the library made (the usage chunk that only the
instrumentation asked for aside). A stream dropped unfinished is tracked when it is collected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .capture import Call, Capture
from .llm_calls import Observer, read_message_snapshot

__all__ = [
    "AsyncMessageStreamManagerProxy",
    "AsyncStreamProxy",
    "Ending",
    "MessageStreamManagerProxy",
    "StreamProxy",
    "describe",
]

#: The finish reason of a stream closed before the provider said how it ended.
EARLY_FINISH_REASON = "incomplete"
_MAX_ERROR_LENGTH = 2000


def describe(error: BaseException) -> str:
    """The text of an API error on the event: its class and message, as OpenTelemetry's
    ``exception.type`` and ``exception.message`` read (``openai.RateLimitError: Error code: 429 ...``),
    so that the exporter and ``instrument`` write the same text for one error."""
    kind = type(error)
    name = (
        kind.__qualname__ if kind.__module__ in ("builtins", "__main__") else f"{kind.__module__}.{kind.__qualname__}"
    )
    text = f"{name}: {error}" if str(error) else name
    return text if len(text) <= _MAX_ERROR_LENGTH else text[: _MAX_ERROR_LENGTH - 3] + "..."


class Ending:
    """A call in progress: it ends once, with the text and figures read so far."""

    __slots__ = ("capture", "done", "observer", "started")

    def __init__(self, capture: Capture, observer: Observer, started: float) -> None:
        self.capture = capture
        self.observer = observer
        self.started = started
        self.done = False

    def finish(self, error: BaseException | None = None, early: bool = False) -> Call | None:
        """The call to track, or None when it ended already."""
        if self.done:
            return None
        self.done = True
        call = self.observer.end()
        call.latency_ms = (time.perf_counter() - self.started) * 1000.0
        if error is not None:
            call.errors.append(describe(error))
        elif early and not call.finish_reason:
            call.finish_reason = EARLY_FINISH_REASON
        return call

    def shows(self, chunk: Any) -> bool:
        """Read ``chunk`` into the call; whether the caller sees it (False: the usage chunk only we asked
        for). A chunk that cannot be read stops the reading (logged), keeps what was read, and is shown."""
        try:
            return self.observer.chunk(chunk)
        except Exception as exc:
            self.capture.failed(exc, 0, what="stream chunk")
            self.observer = _Blind(self.observer)
            return True


class _Blind(Observer):
    __slots__ = ("_inner",)

    def __init__(self, inner: Observer) -> None:
        super().__init__(inner.call)
        self.pieces = inner.pieces

    def chunk(self, chunk: Any) -> bool:
        return True


class _Proxy:
    """What the stream proxies share: ``isinstance``, attributes, and the end when collected."""

    __slots__ = ("__weakref__", "_ending", "_stream")

    def __init__(self, stream: Any, ending: Ending) -> None:
        object.__setattr__(self, "_stream", stream)
        object.__setattr__(self, "_ending", ending)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(proxy, openai.Stream) holds
        return type(self._stream)

    def __getattr__(self, name: str) -> Any:
        if name in _Proxy.__slots__:  # not set yet: no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self._stream, name)

    def __repr__(self) -> str:
        return repr(self._stream)

    def __del__(self) -> None:
        ending = getattr(self, "_ending", None)
        if ending is not None and not ending.done:
            call = ending.finish(early=True)
            if call is not None:
                ending.capture.track(call)


class StreamProxy(_Proxy):
    """A sync stream (``openai.Stream``, ``anthropic.Stream``)."""

    __slots__ = ()

    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        ending = self._ending
        while True:
            try:
                chunk = next(self._stream)
            except StopIteration:
                self._end()
                raise
            except BaseException as exc:
                self._end(exc)
                raise
            if ending.shows(chunk):
                return chunk

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._end(early=True)

    def __enter__(self) -> StreamProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _end(self, error: BaseException | None = None, early: bool = False) -> None:
        call = self._ending.finish(error, early)
        if call is not None:
            self._ending.capture.track(call)


class AsyncStreamProxy(_Proxy):
    """An async stream (``openai.AsyncStream``, ``anthropic.AsyncStream``)."""

    __slots__ = ()

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        ending = self._ending
        while True:
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                await self._end()
                raise
            except BaseException as exc:
                await self._end(exc)
                raise
            if ending.shows(chunk):
                return chunk

    async def close(self) -> None:
        try:
            await self._stream.close()
        finally:
            await self._end(early=True)

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _end(self, error: BaseException | None = None, early: bool = False) -> None:
        call = self._ending.finish(error, early)
        if call is not None:
            await self._ending.capture.atrack(call)


# -- Anthropic's messages.stream(): the SDK accumulates the message itself ----------------------


class _ManagerProxy:
    __slots__ = ("_call", "_capture", "_manager", "_started", "_stream")

    def __init__(self, manager: Any, capture: Capture, call: Call, started: float) -> None:
        object.__setattr__(self, "_manager", manager)
        object.__setattr__(self, "_capture", capture)
        object.__setattr__(self, "_call", call)
        object.__setattr__(self, "_started", started)
        object.__setattr__(self, "_stream", None)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._manager)

    def __getattr__(self, name: str) -> Any:
        if name in _ManagerProxy.__slots__:
            raise AttributeError(name)
        return getattr(self._manager, name)

    def _ended(self, error: BaseException | None) -> Call:
        call: Call = self._call
        call.latency_ms = (time.perf_counter() - self._started) * 1000.0
        if self._stream is not None:
            try:
                snapshot = self._stream.current_message_snapshot
            except Exception:  # no message started yet
                snapshot = None
            read_message_snapshot(call, snapshot)
        if error is not None:
            call.errors.append(describe(error))
        elif not call.finish_reason:
            call.finish_reason = EARLY_FINISH_REASON
        return call


class MessageStreamManagerProxy(_ManagerProxy):
    """``client.messages.stream(...)`` of a sync Anthropic client: ``with`` gives the SDK's own stream."""

    __slots__ = ()

    def __enter__(self) -> Any:
        try:
            stream = self._manager.__enter__()
        except BaseException as exc:
            self._capture.track(self._ended(exc))
            raise
        object.__setattr__(self, "_stream", stream)
        return stream

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> Any:
        track: Callable[[Call], None] = self._capture.track
        try:
            return self._manager.__exit__(kind, error, traceback)
        finally:
            track(self._ended(error))


class AsyncMessageStreamManagerProxy(_ManagerProxy):
    """``client.messages.stream(...)`` of an async Anthropic client (``async with``)."""

    __slots__ = ()

    async def __aenter__(self) -> Any:
        try:
            stream = await self._manager.__aenter__()
        except BaseException as exc:
            await self._capture.atrack(self._ended(exc))
            raise
        object.__setattr__(self, "_stream", stream)
        return stream

    async def __aexit__(self, kind: Any, error: BaseException | None, traceback: Any) -> Any:
        try:
            return await self._manager.__aexit__(kind, error, traceback)
        finally:
            await self._capture.atrack(self._ended(error))
