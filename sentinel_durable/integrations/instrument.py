"""``client.instrument(llm_client, service=...)``: every call of an OpenAI or Anthropic client tracked.

The methods are replaced on the instance's own resource objects (``llm_client.chat.completions``,
``llm_client.responses``, ``llm_client.messages``), never on the library's classes: other
clients stay as they were, and the object returned is the one given, still an instance of its
class. Copies made with ``with_options``/``copy`` are instrumented alike. Instrumenting again
replaces the earlier instrumentation; ``uninstrument`` removes it.

Wrapped: ``chat.completions.create`` / ``parse`` and ``responses.create`` / ``parse`` (OpenAI,
sync and async; the ``chat.completions.stream`` helper calls ``create`` and is tracked through it),
``messages.create`` and ``messages.stream`` (Anthropic, sync and async), streaming or not.
The API's exception is re-raised unchanged, after its event is tracked.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .capture import Call, Capture
from .genai import Prices
from .llm_calls import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_RESPONSES, Api
from .streams import (
    AsyncMessageStreamManagerProxy,
    AsyncStreamProxy,
    Ending,
    MessageStreamManagerProxy,
    StreamProxy,
    describe,
)

if TYPE_CHECKING:
    from ..aio import AsyncClient
    from ..client import Client

__all__ = ["instrument", "uninstrument"]

_L = TypeVar("_L")
#: Where an instrumented client keeps what was replaced: [(object, attribute name)].
_PATCHED = "_sentinel_durable_patched"
_ORIGINAL = "__sentinel_durable_original__"


def instrument(
    client: Client | AsyncClient,
    llm_client: _L,
    *,
    service: str,
    capture_content: bool = True,
    prices: Prices | None = None,
    **defaults: Any,
) -> _L:
    """Instrument ``llm_client`` (see ``Client.instrument``); returns it."""
    if not isinstance(service, str) or not service:
        raise TypeError("instrument() needs service=, a non-empty string naming the calling service")
    capture = Capture(
        client, source="instrument", service=service, capture_content=capture_content, prices=prices, defaults=defaults
    )
    _instrument_with(capture, llm_client)
    return llm_client


def uninstrument(llm_client: Any) -> None:
    """Undo ``instrument`` on ``llm_client`` (its copies made since keep theirs)."""
    for owner, name in llm_client.__dict__.pop(_PATCHED, ()):
        owner.__dict__.pop(name, None)


def _instrument_with(capture: Capture, llm_client: Any) -> None:
    kind, is_async = _kind(llm_client)
    uninstrument(llm_client)
    patched: list[tuple[Any, str]] = []

    def patch(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        original = getattr(owner, name, None)
        if original is None:  # an older library without this method
            return
        wrapper = make(getattr(original, _ORIGINAL, original))
        setattr(wrapper, _ORIGINAL, getattr(original, _ORIGINAL, original))
        owner.__dict__[name] = wrapper
        patched.append((owner, name))

    create = _async_create if is_async else _sync_create
    if kind == "openai":
        responses = getattr(llm_client, "responses", None)  # openai < 1.66 has no Responses API
        for name in ("create", "parse"):  # parse: the same call, with the reply parsed into the caller's type
            patch(llm_client.chat.completions, name, lambda original: create(original, capture, OPENAI_CHAT))
            if responses is not None:
                patch(responses, name, lambda original: create(original, capture, OPENAI_RESPONSES))
    else:
        patch(llm_client.messages, "create", lambda original: create(original, capture, ANTHROPIC_MESSAGES))
        patch(llm_client.messages, "stream", lambda original: _stream_manager(original, capture, is_async))
    for name in ("copy", "with_options"):
        patch(llm_client, name, lambda original: _copying(original, capture))
    llm_client.__dict__[_PATCHED] = patched


def _kind(llm_client: Any) -> tuple[str, bool]:
    """("openai" | "anthropic", is_async), or TypeError for any other object."""
    openai = sys.modules.get("openai")
    if openai is not None:
        if isinstance(llm_client, openai.AsyncOpenAI):
            return "openai", True
        if isinstance(llm_client, openai.OpenAI):
            return "openai", False
    anthropic = sys.modules.get("anthropic")
    if anthropic is not None:
        if isinstance(llm_client, anthropic.AsyncAnthropic):
            return "anthropic", True
        if isinstance(llm_client, anthropic.Anthropic):
            return "anthropic", False
    raise TypeError(
        "instrument() takes an openai.OpenAI, openai.AsyncOpenAI, anthropic.Anthropic or "
        f"anthropic.AsyncAnthropic client, not {type(llm_client).__module__}.{type(llm_client).__qualname__}"
    )


def _copying(original: Callable[..., Any], capture: Capture) -> Callable[..., Any]:
    def copy(*args: Any, **kwargs: Any) -> Any:
        copied = original(*args, **kwargs)
        _instrument_with(capture, copied)
        return copied

    return copy


# -- one call ----------------------------------------------------------------------------------------


def _begin(capture: Capture, api: Api, kwargs: dict[str, Any]) -> tuple[Call | None, bool]:
    """The call about to be made, and whether its usage chunk is ours to hide; (None, False)
    when the request cannot be read (counted: the call itself goes ahead unchanged)."""
    try:
        call = api.start(kwargs)
        call.trace_id, call.span_id = capture.span_ids()
    except Exception as exc:
        capture.failed(exc, 1)
        return None, False
    hide = False
    if api is OPENAI_CHAT and kwargs.get("stream") is True:
        options = kwargs.get("stream_options")
        if options is None or (isinstance(options, Mapping) and "include_usage" not in options) or _omitted(options):
            kwargs["stream_options"] = {**(options if isinstance(options, Mapping) else {}), "include_usage": True}
            hide = True
    return call, hide


def _omitted(value: Any) -> bool:
    """openai's NOT_GIVEN / omit markers."""
    return type(value).__name__ in ("NotGiven", "Omit")


def _failed(call: Call, started: float, error: BaseException) -> Call:
    call.errors.append(describe(error))
    call.latency_ms = (time.perf_counter() - started) * 1000.0
    return call


def _answered(capture: Capture, api: Api, call: Call, started: float, response: Any) -> Call | None:
    call.latency_ms = (time.perf_counter() - started) * 1000.0
    try:
        api.response(call, response)
    except Exception as exc:
        capture.failed(exc, 1)
        return None
    return call


def _sync_create(original: Callable[..., Any], capture: Capture, api: Api) -> Callable[..., Any]:
    def create(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        call, hide = _begin(capture, api, kwargs)
        if call is None:
            return original(*args, **kwargs)
        try:
            result = original(*args, **kwargs)
        except Exception as exc:
            capture.track(_failed(call, started, exc))
            raise
        if kwargs.get("stream") is True:
            return StreamProxy(result, Ending(capture, api.observer(call, hide), started))
        if (answered := _answered(capture, api, call, started, result)) is not None:
            capture.track(answered)
        return result

    return create


def _async_create(original: Callable[..., Any], capture: Capture, api: Api) -> Callable[..., Any]:
    async def create(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        call, hide = _begin(capture, api, kwargs)
        if call is None:
            return await original(*args, **kwargs)
        try:
            result = await original(*args, **kwargs)
        except Exception as exc:
            await capture.atrack(_failed(call, started, exc))
            raise
        if kwargs.get("stream") is True:
            return AsyncStreamProxy(result, Ending(capture, api.observer(call, hide), started))
        if (answered := _answered(capture, api, call, started, result)) is not None:
            await capture.atrack(answered)
        return result

    return create


def _stream_manager(original: Callable[..., Any], capture: Capture, is_async: bool) -> Callable[..., Any]:
    proxy = AsyncMessageStreamManagerProxy if is_async else MessageStreamManagerProxy

    def stream(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        call, _ = _begin(capture, ANTHROPIC_MESSAGES, kwargs)
        manager = original(*args, **kwargs)
        return manager if call is None else proxy(manager, capture, call, started)

    return stream
