"""``track``'s keywords are declared once (``sentinel_durable.fields.TrackFields``) and both clients
and ``observe`` take exactly them: a misspelt or missing keyword is the ``TypeError`` Python gives."""

from __future__ import annotations

import asyncio
import typing
from pathlib import Path

import pytest
from conftest import free_port

import sentinel_durable as sentinel
from sentinel_durable.fields import TRACK_DEFAULTS, TrackFields

REQUIRED = {"service": "svc", "model": "gpt-4", "prompt": "q", "response": "a", "latency_ms": 5.0}


def test_the_declaration_is_the_documented_signature() -> None:
    assert TrackFields.__required_keys__ == set(REQUIRED)
    assert TrackFields.__optional_keys__ == set(TRACK_DEFAULTS)
    hints = typing.get_type_hints(TrackFields)
    assert hints["latency_ms"] is float
    assert hints["prompt_tokens"] is int


def test_a_misspelt_or_missing_keyword_is_a_type_error_naming_it(spool_dir: Path) -> None:
    with sentinel.Client(brokers=[f"127.0.0.1:{free_port()}"], topic="t", spool_dir=spool_dir) as client:
        with pytest.raises(TypeError, match="unexpected keyword argument 'prompt_token'"):
            client.track(**REQUIRED, prompt_token=3)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="missing 1 required keyword argument: 'latency_ms'"):
            client.track(**{k: v for k, v in REQUIRED.items() if k != "latency_ms"})  # type: ignore[arg-type]
        assert client.stats().spooled == 0
        client.close(timeout=0)


def test_the_async_client_checks_the_same_keywords(spool_dir: Path) -> None:
    async def main() -> None:
        async with sentinel.AsyncClient(brokers=[f"127.0.0.1:{free_port()}"], topic="t", spool_dir=spool_dir) as c:
            with pytest.raises(TypeError, match="unexpected keyword argument 'servce'"):
                await c.track(**REQUIRED, servce="x")  # type: ignore[call-arg]
            await c.close(timeout=0)

    asyncio.run(main())
