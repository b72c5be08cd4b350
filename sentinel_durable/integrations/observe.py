"""LLM-call helpers: time a call, collect what it returned, track one event.

``Observation`` is a context manager (``with`` / ``async with``) and a decorator (of plain
and ``async def`` functions). It measures the latency with ``time.perf_counter``, records
an exception as an error on the event (and re-raises it), and lets the caller fill in the
prompt, response, tokens, finish reason, cost and metadata; on exit it tracks exactly one
event through ``client.track``::

    with client.observe(service="chat", model="gpt-4o", prompt=question) as obs:
        completion = openai_client.chat.completions.create(...)
        obs.record_openai(completion)

The adapters (``usage.py``) read OpenAI chat completions and Anthropic messages by duck
typing: neither package is imported or needed.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from ..errors import ValidationError
from ..fields import TrackFields
from .usage import Usage, usage_from_anthropic, usage_from_openai, usage_from_result

if TYPE_CHECKING:
    from ..aio import AsyncClient
    from ..client import Client

__all__ = [
    "Observation",
    "Usage",
    "current_observation",
    "usage_from_anthropic",
    "usage_from_openai",
]

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: ``track`` keywords an Observation takes at creation, besides service, model and prompt
#: (latency is what it measures).
_TRACK_FIELDS = (TrackFields.__required_keys__ | TrackFields.__optional_keys__) - {
    "service", "model", "prompt", "latency_ms"
}  # fmt: skip

#: The finish reason of a call that raised, unless the caller set one.
_ERROR_FINISH_REASON = "error"

_current: contextvars.ContextVar[Observation | None] = contextvars.ContextVar(
    "sentinel_durable_observation", default=None
)


def current_observation() -> Observation:
    """The innermost Observation entered in this context (e.g. inside a decorated function).

    Raises ``LookupError`` outside one.
    """
    observation = _current.get()
    if observation is None:
        raise LookupError("no Observation is active here: call this inside `with client.observe(...)` or its function")
    return observation


# -- the observation ----------------------------------------------------------------------------


class Observation:
    """One LLM call, observed: a context manager and a decorator that tracks one event on exit.

    ``Observation(client, service=..., model=..., prompt=None, **fields)``, or
    ``client.observe(...)``. ``client`` is a :class:`~sentinel_durable.Client` (``with``, or
    ``async with`` where the spool write runs off the loop) or an
    :class:`~sentinel_durable.AsyncClient` (``async with`` only). ``fields`` are further
    ``track`` keywords: ``response``, ``prompt_tokens``, ``completion_tokens``, ``cost_usd``,
    ``finish_reason``, ``trace_id``, ``span_id``, ``metadata``, ``errors``,
    ``prompt_embedding``, ``response_embedding``.

    An Observation is entered once. As a decorator it makes a fresh one per call, reachable
    inside the function with :func:`current_observation`; a returned ``str`` becomes the
    response text, and a returned OpenAI or Anthropic response is read as by
    :meth:`record_openai` / :meth:`record_anthropic` — for what the function did not set.

    On exit the event is tracked with the latency measured, ``""`` / 0 for what was not
    set, and finish reason ``"stop"`` (``"error"`` when the block raised). An exception
    from the block is added to ``errors`` as ``"Type: message"`` and re-raised. If tracking
    fails (``ValidationError`` for a bad value, ``ClientClosedError``), that error is raised —
    unless the block raised, whose exception then wins and the failure is logged.
    """

    def __init__(
        self,
        client: Client | AsyncClient,
        *,
        service: str,
        model: str,
        prompt: str | None = None,
        **fields: Any,
    ) -> None:
        unknown = sorted(set(fields) - _TRACK_FIELDS)
        if unknown:
            raise TypeError(f"Observation() got unexpected keyword arguments: {', '.join(unknown)}")
        self._client = client
        self._service = service
        self._model = model
        self._given = {"prompt": prompt, **fields}  # for fresh copies (the decorator)
        self._prompt = prompt
        self._response: str | None = fields.pop("response", None)
        self._prompt_tokens: int | None = fields.pop("prompt_tokens", None)
        self._completion_tokens: int | None = fields.pop("completion_tokens", None)
        self._finish_reason: str | None = fields.pop("finish_reason", None)
        self._cost_usd: float | None = fields.pop("cost_usd", None)
        metadata = fields.pop("metadata", None)
        self._metadata: Any = (
            dict(metadata) if isinstance(metadata, Mapping) else ({} if metadata is None else metadata)
        )
        errors = fields.pop("errors", None)
        self._errors: Any = list(errors) if isinstance(errors, list | tuple) else ([] if errors is None else errors)
        self._other = fields  # trace_id, span_id, embeddings: passed to track as given
        self._started: float | None = None
        self._token: contextvars.Token[Observation | None] | None = None
        self.latency_ms: float | None = None
        """The measured latency, set on exit."""
        self.event_id: str | None = None
        """The tracked event's id, set on exit once tracked."""

    # -- what the caller fills in ------------------------------------------------------------

    def set_prompt(self, text: str, tokens: int | None = None) -> Observation:
        """The prompt text, and its token count if known."""
        self._prompt = text
        if tokens is not None:
            self._prompt_tokens = tokens
        return self

    def set_response(self, text: str, tokens: int | None = None, finish_reason: str | None = None) -> Observation:
        """The response text, and its token count and finish reason if known."""
        self._response = text
        if tokens is not None:
            self._completion_tokens = tokens
        if finish_reason is not None:
            self._finish_reason = finish_reason
        return self

    def set_tokens(self, prompt: int | None = None, completion: int | None = None) -> Observation:
        """Token counts alone (``None`` leaves one as it is)."""
        if prompt is not None:
            self._prompt_tokens = prompt
        if completion is not None:
            self._completion_tokens = completion
        return self

    def set_finish_reason(self, reason: str) -> Observation:
        self._finish_reason = reason
        return self

    def set_cost(self, usd: float) -> Observation:
        self._cost_usd = usd
        return self

    def add_metadata(self, key: str, value: str) -> Observation:
        if not isinstance(self._metadata, dict):
            raise ValidationError("metadata", "must be a mapping of strings to strings", self._metadata)
        self._metadata[key] = value
        return self

    def add_error(self, message: str) -> Observation:
        if not isinstance(self._errors, list):
            raise ValidationError("errors", "must be a list of strings", self._errors)
        self._errors.append(message)
        return self

    def record(self, usage: Usage) -> Observation:
        """Take what ``usage`` knows (its ``None`` fields leave the observation as it is)."""
        if usage.response_text is not None:
            self._response = usage.response_text
        self.set_tokens(usage.prompt_tokens, usage.completion_tokens)
        if usage.finish_reason is not None:
            self._finish_reason = usage.finish_reason
        return self

    def record_openai(self, response: Any) -> Observation:
        """Take tokens, finish reason and text from an OpenAI chat completion (:func:`usage_from_openai`)."""
        return self.record(usage_from_openai(response))

    def record_anthropic(self, response: Any) -> Observation:
        """Take tokens, stop reason and text from an Anthropic message (:func:`usage_from_anthropic`)."""
        return self.record(usage_from_anthropic(response))

    def _fill_from_result(self, result: Any) -> None:
        # A decorated function's result: only for what the function did not set itself.
        usage = usage_from_result(result)
        if usage is None:
            return
        if self._response is None and usage.response_text is not None:
            self._response = usage.response_text
        if self._prompt_tokens is None:
            self._prompt_tokens = usage.prompt_tokens
        if self._completion_tokens is None:
            self._completion_tokens = usage.completion_tokens
        if self._finish_reason is None:
            self._finish_reason = usage.finish_reason

    # -- the context manager -----------------------------------------------------------------

    def __enter__(self) -> Observation:
        if _is_async(self._client):
            raise TypeError("an Observation of an AsyncClient is entered with `async with`")
        self._start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        fields = self._finish(error)
        try:
            self.event_id = cast("Client", self._client).track(**fields)
        except Exception:
            if error is None:
                raise
            logger.warning("could not track the observation of a failed %s call", self._model, exc_info=True)

    async def __aenter__(self) -> Observation:
        self._start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        fields = self._finish(error)
        try:
            if _is_async(self._client):
                self.event_id = await cast("AsyncClient", self._client).track(**fields)
            else:  # a sync Client: its spool write must not hold the loop
                self.event_id = await asyncio.to_thread(cast("Client", self._client).track, **fields)
        except Exception:
            if error is None:
                raise
            logger.warning("could not track the observation of a failed %s call", self._model, exc_info=True)

    def _start(self) -> None:
        if self._started is not None:
            raise RuntimeError("an Observation is entered once; use client.observe(...) again for another call")
        self._token = _current.set(self)
        self._started = time.perf_counter()

    def _finish(self, error: BaseException | None) -> dict[str, Any]:
        assert self._started is not None
        self.latency_ms = (time.perf_counter() - self._started) * 1000
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        if error is not None:
            if isinstance(self._errors, list):
                self._errors.append(f"{type(error).__name__}: {error}")
            if self._finish_reason is None:
                self._finish_reason = _ERROR_FINISH_REASON
        return {
            "service": self._service,
            "model": self._model,
            "prompt": "" if self._prompt is None else self._prompt,
            "response": "" if self._response is None else self._response,
            "latency_ms": self.latency_ms,
            "prompt_tokens": 0 if self._prompt_tokens is None else self._prompt_tokens,
            "completion_tokens": 0 if self._completion_tokens is None else self._completion_tokens,
            "cost_usd": 0.0 if self._cost_usd is None else self._cost_usd,
            "finish_reason": "stop" if self._finish_reason is None else self._finish_reason,
            "metadata": self._metadata,
            "errors": self._errors,
            **self._other,
        }

    # -- the decorator -----------------------------------------------------------------------

    def _fresh(self) -> Observation:
        given = dict(self._given)
        for name in ("metadata", "errors"):  # each call gets its own, not the template's
            value = given.get(name)
            if isinstance(value, Mapping):
                given[name] = dict(value)
            elif isinstance(value, list | tuple):
                given[name] = list(value)
        return Observation(self._client, service=self._service, model=self._model, **given)

    def __call__(self, function: Callable[_P, _R]) -> Callable[_P, _R]:
        """Observe every call of ``function`` (a plain or ``async def`` function)."""
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            raise TypeError("a generator's latency is not its call's: use the context manager around the stream")
        if inspect.iscoroutinefunction(function):
            coroutine_function = cast(Callable[_P, Awaitable[Any]], function)

            @functools.wraps(function)
            async def observed_async(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                async with self._fresh() as observation:
                    result = await coroutine_function(*args, **kwargs)
                    observation._fill_from_result(result)
                    return result

            return cast(Callable[_P, _R], observed_async)
        if _is_async(self._client):
            raise TypeError("an Observation of an AsyncClient decorates `async def` functions only")

        @functools.wraps(function)
        def observed(*args: _P.args, **kwargs: _P.kwargs) -> Any:
            with self._fresh() as observation:
                result = function(*args, **kwargs)
                observation._fill_from_result(result)
                return result

        return cast(Callable[_P, _R], observed)

    def __repr__(self) -> str:
        state = "tracked" if self.event_id else ("open" if self._token is not None else "new")
        return f"<Observation service={self._service!r} model={self._model!r} {state}>"


def _is_async(client: Any) -> bool:
    # Duck-typed, so this module imports neither client module (client.py imports this one).
    return inspect.iscoroutinefunction(getattr(client, "track", None))
