"""Where the integrations' events go: one LLM call (``Call``) turned into ``track`` fields and
spooled through a ``Client`` or an ``AsyncClient``, from sync or async code, never raising.

Telemetry never breaks the caller: a call that cannot be tracked (its event is invalid, the
spool refuses it, the client is closed) is counted in ``stats().capture_errors`` and logged —
the first time with its traceback, later at DEBUG. No prompt or response text is logged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from ..errors import ConfigError
from .genai import Prices, cost_function
from .otel import current_span_ids

if TYPE_CHECKING:
    from ..aio import AsyncClient
    from ..client import Client
    from ..event import TelemetryEvent
    from ..stats import Counter

__all__ = ["Call", "Capture"]

logger = logging.getLogger("sentinel_durable.integrations")

#: The finish reason of a call that raised.
ERROR_FINISH_REASON = "error"
#: ``**defaults`` that ``instrument`` takes: track keywords a call does not decide.
_DEFAULTABLE = frozenset({"metadata", "cost_usd", "finish_reason", "trace_id", "span_id"})


@dataclass(slots=True)
class Call:
    """One LLM call as an integration saw it; ``None`` where it said nothing."""

    model: str | None = None
    prompt: str = ""
    response: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    latency_ms: float = 0.0
    errors: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    trace_id: str | None = None
    span_id: str | None = None
    timestamp: datetime | None = None
    service: str | None = None
    cost_usd: float | None = None


class Capture:
    """Tracks ``Call``s through ``client`` for one integration (``source`` names it in logs)."""

    def __init__(
        self,
        client: Client | AsyncClient,
        *,
        source: str,
        service: str | None = None,
        capture_content: bool = True,
        prices: Prices | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        if service is not None and (not isinstance(service, str) or not service):
            raise ConfigError("service", "must be a non-empty string")
        unknown = sorted(set(defaults or {}) - _DEFAULTABLE)
        if unknown:
            raise TypeError(
                f"{source}() got an unexpected keyword argument {unknown[0]!r} "
                f"(defaults may be {', '.join(sorted(_DEFAULTABLE))})"
            )
        self.client = client
        # Not isinstance: the clients import this module (through instrument), it never imports them.
        self.is_async = inspect.iscoroutinefunction(client.track)
        self._sync: Client | None = None if self.is_async else cast("Client", client)
        self._async: AsyncClient | None = cast("AsyncClient", client) if self.is_async else None
        self.source = source
        self.service = service
        self.capture_content = capture_content
        self.cost = cost_function(prices)
        self.defaults = dict(defaults or {})
        self._counter: Counter = client._capture_errors
        self._logged = False
        self._cost_failure_logged = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- a call to fields ---------------------------------------------------------------------------

    def span_ids(self) -> tuple[str | None, str | None]:
        """The current span's ids (when ``otel_trace_ids`` is on), read when a call starts: a stream
        may end in another context."""
        if "trace_id" in self.defaults or "span_id" in self.defaults or not self.client.config.otel_trace_ids:
            return None, None
        ids = current_span_ids()
        return (None, None) if ids is None else ids

    def fields(self, call: Call) -> dict[str, Any]:
        """The ``track`` keywords of ``call``; ``ValueError`` when it names no model."""
        if not call.model:
            raise ValueError("the call names no model")
        service = self.service or call.service
        if not service:
            raise ValueError("the call names no service")
        prompt_tokens = call.prompt_tokens or 0
        completion_tokens = call.completion_tokens or 0
        fields: dict[str, Any] = {**self.defaults}
        metadata = {**(fields.get("metadata") or {}), **call.metadata}
        cost = call.cost_usd if call.cost_usd is not None else self._cost(call.model, prompt_tokens, completion_tokens)
        cost = cost or fields.get("cost_usd", 0.0)
        fields.update(
            service=service,
            model=call.model,
            prompt=call.prompt if self.capture_content else "",
            response=call.response if self.capture_content else "",
            latency_ms=call.latency_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost,
            finish_reason=call.finish_reason
            or (ERROR_FINISH_REASON if call.errors else fields.get("finish_reason", "stop")),
            metadata=metadata or None,
            errors=call.errors or None,
        )
        if call.trace_id is not None or call.span_id is not None:
            fields.update(trace_id=call.trace_id, span_id=call.span_id)
        return fields

    def _cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """The price table's cost; 0 when the user's ``prices`` callable fails (logged once): the
        event is kept without its cost rather than lost."""
        try:
            return self.cost(model, prompt_tokens, completion_tokens)
        except Exception as exc:
            if not self._cost_failure_logged:
                self._cost_failure_logged = True
                logger.warning("%s: the prices callable failed; events get cost_usd=0", self.source, exc_info=exc)
            return 0.0

    def event(self, call: Call) -> TelemetryEvent:
        """The event of ``call`` checked against the client's rules (its timestamp the call's start)."""
        from ..event import validate_event
        from ..fields import event_fields

        config = self.client.config
        # The ids are the call's (read when it began, see span_ids), never the span current now.
        values = event_fields(config, self.fields(call), current_span=False)
        if call.timestamp is not None:
            values["timestamp"] = call.timestamp
        return validate_event(values, config.event_rules)

    # -- tracking, never raising -------------------------------------------------------------------

    def track(self, call: Call) -> None:
        """Track ``call`` from sync code (from a running loop's thread too, for an AsyncClient)."""
        event = self._event_or_none(call)
        if event is None:
            return
        if self._async is None:
            self._spool_checked([event])
            return
        aclient = self._async
        self.run(lambda: aclient.send(event), 1)

    async def atrack(self, call: Call) -> None:
        """Track ``call`` from async code."""
        event = self._event_or_none(call)
        if event is None:
            return
        if self._async is None:
            self._spool_checked([event])
            return
        try:
            await self._async.send(event)
        except Exception as exc:
            self.failed(exc, 1)

    def _event_or_none(self, call: Call) -> TelemetryEvent | None:
        try:
            return self.event(call)
        except Exception as exc:
            self.failed(exc, 1)
            return None

    def send_batch(self, events: Sequence[TelemetryEvent]) -> bool:
        """Spool ``events`` (made by :meth:`event`) in one transaction from sync code; False (counted,
        logged) when refused."""
        if not events:
            return True
        if self._async is None:
            return self._spool_checked(events)
        aclient = self._async
        return self.run(lambda: aclient.send_batch(events), len(events))

    def _spool_checked(self, events: Sequence[TelemetryEvent]) -> bool:
        """A ``Client``'s spooling of events made by :meth:`event`: checked once, not again at send."""
        assert self._sync is not None
        core = self._sync._core
        return self._guard(lambda: core.send_batch(events, checked=True), len(events))

    def run(self, coroutine: Callable[[], Coroutine[Any, Any, Any]], count: int) -> bool:
        """An AsyncClient call from sync code: in a loop's thread a task (its failure counted when it
        ends; True), elsewhere run to its end on a loop of this thread's own."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            return self._guard(lambda: asyncio.run(coroutine()), count)
        task = loop.create_task(coroutine())
        self._tasks.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(lambda done: self._task_done(done, count))
        return True

    def _task_done(self, task: asyncio.Task[Any], count: int) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failed(task.exception(), count)  # type: ignore[arg-type]

    def _guard(self, call: Callable[[], object], count: int) -> bool:
        try:
            call()
        except Exception as exc:
            self.failed(exc, count)
            return False
        return True

    def failed(self, error: BaseException, count: int, what: str = "LLM call") -> None:
        """Count ``count`` calls or spans that could not be tracked; log the first failure in full."""
        self._counter.add(count)
        plural = "s" if count > 1 else ""
        if not self._logged:
            self._logged = True
            logger.warning(
                "%s could not track %d %s%s (counted in stats().capture_errors; later failures are logged at DEBUG)",
                self.source, count, what, plural, exc_info=error,
            )  # fmt: skip
        else:
            logger.debug("%s could not track %d %s%s: %s", self.source, count, what, plural, type(error).__name__)
