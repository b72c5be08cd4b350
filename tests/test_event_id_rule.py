"""One event-id rule for every way in: the id a send returns is the id of the event spooled (the one
``before_send`` returned); when ``before_send`` drops the event, the id of the event given.

Read back from the spool file, offline: what is spooled is what Kafka gets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import complete_builder, free_port, offline_client, track_fields

import sentinel_durable as sentinel
from sentinel_durable.spool import read_events, spool_files

NEW_ID = "00000000-0000-4000-8000-000000000001"


def new_id(event: sentinel.TelemetryEvent) -> sentinel.TelemetryEvent | None:
    """A hook that gives every event an id of its own (e.g. one derived from the application's request id)."""
    if event.metadata.get("drop") == "yes":
        return None
    return event.model_copy(update={"event_id": NEW_ID})


def options(spool_dir: Path) -> dict[str, Any]:
    return {"brokers": [f"127.0.0.1:{free_port()}"], "topic": "ids", "spool_dir": spool_dir, "before_send": new_id}


def spooled_ids(spool_dir: Path) -> list[str]:
    return [json.loads(body)["event_id"] for path in spool_files(spool_dir) for body in read_events(path)]


def event(**metadata: str) -> sentinel.TelemetryEvent:
    return complete_builder().metadata(metadata).build()


@pytest.mark.parametrize("way", ["track", "send", "send_batch"])
def test_a_client_returns_the_id_of_the_event_it_spooled(spool_dir: Path, way: str) -> None:
    with offline_client(spool_dir, topic="ids", before_send=new_id) as client:
        if way == "track":
            returned = [client.track(**track_fields())]
        elif way == "send":
            returned = [client.send(event())]
        else:
            returned = client.send_batch([event()])
        assert returned == [NEW_ID]
        assert spooled_ids(spool_dir) == [NEW_ID]
        client.close(timeout=0)


@pytest.mark.parametrize("way", ["track", "send"])
def test_an_async_client_returns_the_id_of_the_event_it_spooled(spool_dir: Path, way: str) -> None:
    async def main() -> str:
        async with sentinel.AsyncClient(**options(spool_dir)) as client:
            if way == "track":
                return await client.track(**track_fields())
            return await client.send(event())

    assert asyncio.run(main()) == NEW_ID
    assert spooled_ids(spool_dir) == [NEW_ID]


def test_an_event_the_hook_drops_returns_the_id_it_was_given(spool_dir: Path) -> None:
    given = event(drop="yes")
    with offline_client(spool_dir, topic="ids", before_send=new_id) as client:
        assert client.send(given) == given.event_id
        tracked = client.track(**track_fields(metadata={"drop": "yes"}))
        assert len(tracked) == 36
        assert tracked != NEW_ID
        assert client.stats().dropped == {"before_send": 2}
        client.close(timeout=0)
    assert spooled_ids(spool_dir) == []
