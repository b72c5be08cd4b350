"""AsyncClient end to end under asyncio, against a real Kafka-compatible broker (Tansu), never a mock."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import sqlite3
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from conftest import build, event_ids, free_port, track_fields, wait_until_async
from spool_helpers import drain_all

import sentinel_durable as sentinel
from sentinel_durable.aio import AsyncClient
from sentinel_durable.spool import spool_files
from sentinel_durable.testing import EmbeddedBroker

pytestmark = pytest.mark.asyncio


def atrack(client: AsyncClient, n: int = 0, service: str = "svc", **fields: Any) -> Coroutine[Any, Any, str]:
    """``client.track`` of the ``n``-th small valid event (conftest's ``track_fields``), to await."""
    return client.track(**track_fields(n, service, **fields))


async def read_topic(broker: EmbeddedBroker, topic: str, expected: int) -> list[Any]:
    """``broker.read_topic`` (a blocking consumer), off the loop."""
    return await asyncio.to_thread(broker.read_topic, topic, expected)


class Ticker:
    """A task of the loop that ticks every 10 ms, counting its ticks and the most threads it saw."""

    INTERVAL = 0.01

    def __init__(self) -> None:
        self.ticks = 0
        self.max_threads = threading.active_count()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await wait_until_async(lambda: self.ticks, 10, "the ticker's first tick")  # ticking before the work starts
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.INTERVAL)
            self.ticks += 1
            self.max_threads = max(self.max_threads, threading.active_count())


# --- a responsive loop ---------------------------------------------------------------------------


async def test_event_loop_keeps_ticking_while_10000_events_are_sent(
    broker: EmbeddedBroker, make_async_client: Any, topic: str, spool_dir: Path
) -> None:
    """The loop only hands a call to the writer thread and awaits it: while every send waits for the
    disk (another connection holds the spool file's write lock), the loop runs its other tasks."""
    client = make_async_client(broker.bootstrap_servers, write_timeout=30)
    await client.open()
    (path,) = spool_files(spool_dir)

    async def sender(slot: int) -> list[str]:  # a request handler: sequential sends, 100 at once
        return [await atrack(client, n, service=f"s{slot}") for n in range(100)]

    async with Ticker() as ticker:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # no send can be written until it lets go
        try:
            senders = [asyncio.create_task(sender(slot)) for slot in range(100)]
            ticks = ticker.ticks
            await wait_until_async(lambda: ticker.ticks >= ticks + 20, 30, "20 ticks while the sends wait")
            assert not any(task.done() for task in senders)  # every sender still waits for its first send
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        sent = [event_id for ids in await asyncio.gather(*senders) for event_id in ids]
        assert await client.flush(timeout=60)
    assert len(set(sent)) == 10_000
    assert set(event_ids(await read_topic(broker, topic, 10_000))) == set(sent)


async def test_ten_thousand_concurrent_tracks_use_a_few_threads(
    broker: EmbeddedBroker, make_async_client: Any, topic: str
) -> None:
    client = make_async_client(broker.bootstrap_servers)
    await client.open()
    async with Ticker() as ticker:
        before = threading.active_count()
        sent = await asyncio.gather(*(atrack(client, n) for n in range(10_000)))
        assert await client.flush(timeout=60)
    # Kafka's network thread and a wait thread for flush() start meanwhile; not one per await.
    assert ticker.max_threads <= before + 10, f"{ticker.max_threads - before} threads more for 10,000 awaits"
    assert len(set(sent)) == 10_000
    stats = await client.stats()
    assert stats.writes >= 1
    assert stats.delivered == 10_000
    assert set(event_ids(await read_topic(broker, topic, 10_000))) == set(sent)


async def test_a_waiting_send_does_not_hold_up_other_sends(make_async_client: Any) -> None:
    client = make_async_client(f"127.0.0.1:{free_port()}")  # no broker: the wait lasts until close()
    await client.open()
    waiting = asyncio.create_task(client.send(build(), wait=True, timeout=None))
    await asyncio.sleep(0)  # the wait has started
    await asyncio.wait_for(asyncio.gather(*(atrack(client, n) for n in range(100))), 30)  # done meanwhile
    assert not waiting.done()
    await client.close(timeout=1)
    with pytest.raises(sentinel.ClientClosedError):
        await waiting


# --- opening and closing -------------------------------------------------------------------------------


async def test_creating_an_async_client_touches_no_disk_until_opened(make_async_client: Any, spool_dir: Path) -> None:
    client = make_async_client(f"127.0.0.1:{free_port()}")
    assert not spool_dir.exists()
    assert "not opened" in repr(client)
    assert await client.open() is client
    assert spool_dir.is_dir()


async def test_async_with_delivers_and_closes(broker: EmbeddedBroker, spool_dir: Path, topic: str) -> None:
    async with AsyncClient(brokers=[broker.bootstrap_servers], topic=topic, spool_dir=spool_dir) as client:
        sent = [await atrack(client, n) for n in range(10)]
    assert client.closed
    assert set(event_ids(await read_topic(broker, topic, 10))) == set(sent)
    with pytest.raises(sentinel.ClientClosedError):
        await atrack(client)


async def test_calls_after_close_raise_client_closed(make_async_client: Any) -> None:
    client = make_async_client(f"127.0.0.1:{free_port()}")
    await atrack(client)
    await client.close(timeout=0.5)
    with pytest.raises(sentinel.ClientClosedError):
        await atrack(client)
    with pytest.raises(sentinel.ClientClosedError):
        await client.send(build())
    with pytest.raises(sentinel.ClientClosedError):
        await client.send(build(), wait=True, timeout=1)
    with pytest.raises(sentinel.ClientClosedError):
        await client.send_batch([build()])
    with pytest.raises(sentinel.ClientClosedError):
        await client.flush()
    with pytest.raises(sentinel.ClientClosedError):
        await client.open()
    final = await client.stats()  # the figures as it closed
    assert (final.spooled + final.in_flight, final.delivered) == (1, 0)
    await client.close()  # closing twice is harmless


async def test_a_client_closed_before_use_never_opens(make_async_client: Any, spool_dir: Path) -> None:
    client = make_async_client(f"127.0.0.1:{free_port()}")
    await client.close()
    with pytest.raises(sentinel.ClientClosedError):
        await atrack(client)
    assert not spool_dir.exists()


async def test_close_with_broker_down_returns_in_time_and_keeps_events(make_async_client: Any, spool_dir: Path) -> None:
    client = make_async_client(f"127.0.0.1:{free_port()}", write_timeout=30)
    sent = await asyncio.gather(*(atrack(client, n) for n in range(500)))
    # close(timeout=1) gives up on delivering: it does not wait for a delivery attempt (30 s).
    await asyncio.wait_for(client.close(timeout=1), 10)
    assert client.closed
    assert {event["event_id"] for event in drain_all(spool_dir)} == set(sent)


async def test_close_spools_sends_already_started(make_async_client: Any, spool_dir: Path) -> None:
    client = make_async_client(f"127.0.0.1:{free_port()}")
    await client.open()
    started = [asyncio.create_task(atrack(client, n)) for n in range(200)]
    await asyncio.sleep(0)  # every send has been handed to the writer
    await client.close(timeout=1)
    sent = await asyncio.gather(*started)
    assert {event["event_id"] for event in drain_all(spool_dir)} == set(sent)


async def test_from_env(broker: EmbeddedBroker, spool_dir: Path, topic: str) -> None:
    environ = {"SENTINEL_BROKERS": broker.bootstrap_servers, "SENTINEL_TOPIC": topic,
               "SENTINEL_SPOOL_DIR": str(spool_dir), "SENTINEL_COMPRESSION": "gzip"}  # fmt: skip
    async with AsyncClient.from_env(environ) as client:
        assert client.config.compression == "gzip"
        sent = [await atrack(client, n) for n in range(3)]
        assert await client.flush(timeout=30)
    assert set(event_ids(await read_topic(broker, topic, 3))) == set(sent)


async def test_config_and_options_together_are_a_config_error() -> None:
    with pytest.raises(sentinel.ConfigError):
        AsyncClient(config=sentinel.Config(), topic="t")


# --- sending and waiting -------------------------------------------------------------------------------


async def test_send_and_wait_returns_once_acked(broker: EmbeddedBroker, make_async_client: Any, topic: str) -> None:
    client = make_async_client(broker.bootstrap_servers)
    event = build()
    assert await client.send(event, wait=True, timeout=30) == event.event_id
    assert (await client.stats()).delivered == 1
    assert event_ids(await read_topic(broker, topic, 1)) == [event.event_id]


async def test_send_and_wait_times_out_and_the_event_is_still_delivered(
    broker: EmbeddedBroker, make_async_client: Any, topic: str
) -> None:
    client = make_async_client(broker.bootstrap_servers)
    event = build()
    with pytest.raises(sentinel.DeliveryTimeoutError) as caught:
        await client.send(event, wait=True, timeout=0)  # no broker acks this fast
    assert isinstance(caught.value, TimeoutError)
    assert await client.flush(timeout=30)
    assert event_ids(await read_topic(broker, topic, 1)) == [event.event_id]


async def test_send_and_send_batch_deliver(broker: EmbeddedBroker, make_async_client: Any, topic: str) -> None:
    client = make_async_client(broker.bootstrap_servers)
    single = build()
    batch = [build(n) for n in range(100)]
    assert await client.send(single) == single.event_id
    assert await client.send_batch(batch) == [event.event_id for event in batch]
    assert await client.flush(timeout=30)
    expected = {single.event_id} | {event.event_id for event in batch}
    assert set(event_ids(await read_topic(broker, topic, 101))) == expected


async def test_flush_covers_sends_started_before_it(broker: EmbeddedBroker, make_async_client: Any, topic: str) -> None:
    client = make_async_client(broker.bootstrap_servers)
    await client.open()
    started = [asyncio.create_task(atrack(client, n)) for n in range(300)]
    await asyncio.sleep(0)  # started, not awaited to the end
    assert await client.flush(timeout=30)
    sent = await asyncio.gather(*started)
    assert set(event_ids(await read_topic(broker, topic, 300))) == set(sent)


async def test_flush_with_nothing_pending_is_true_at_once(make_async_client: Any) -> None:
    client = make_async_client(f"127.0.0.1:{free_port()}")
    assert await client.flush(timeout=0) is True


async def test_flush_times_out_without_a_broker(make_async_client: Any) -> None:
    client = make_async_client(f"127.0.0.1:{free_port()}", write_timeout=30)
    await atrack(client)
    # False once its own timeout is over, not after a delivery attempt's (30 s).
    assert await asyncio.wait_for(client.flush(timeout=0.5), 10) is False


# --- validation ------------------------------------------------------------------------------------------


async def test_track_refuses_bad_input_by_field_and_only_that_call_fails(
    broker: EmbeddedBroker, make_async_client: Any, topic: str
) -> None:
    client = make_async_client(broker.bootstrap_servers)
    await client.open()
    results = await asyncio.gather(
        atrack(client, 1), atrack(client, 2, latency_ms=float("nan")), atrack(client, 3), return_exceptions=True
    )
    good = [result for result in results if isinstance(result, str)]
    (bad,) = [result for result in results if isinstance(result, BaseException)]
    assert isinstance(bad, sentinel.ValidationError)
    assert bad.field == "latency_ms"
    assert len(good) == 2
    assert await client.flush(timeout=30)
    assert set(event_ids(await read_topic(broker, topic, 2))) == set(good)


async def test_send_revalidates_with_the_clients_rules(make_async_client: Any) -> None:
    client = make_async_client(f"127.0.0.1:{free_port()}", truncate_text=False, max_text_length=20)
    event = build()
    event.prompt.text = "y" * 100  # changed after build(): caught at send time
    with pytest.raises(sentinel.ValidationError) as caught:
        await client.send(event)
    assert caught.value.field == "prompt.text"
    assert (await client.stats()).spooled == 0


async def test_send_batch_is_all_or_nothing(make_async_client: Any) -> None:
    client = make_async_client(f"127.0.0.1:{free_port()}")
    events = [build(n) for n in range(10)]
    events[7].prompt.tokens = -1
    with pytest.raises(sentinel.ValidationError) as caught:
        await client.send_batch(events)
    assert caught.value.field == "events[7].prompt.tokens"
    assert (await client.stats()).spooled == 0


async def test_an_unusable_spool_directory_is_a_config_error_at_open(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    client = AsyncClient(brokers=["127.0.0.1:1"], spool_dir=blocker / "spool")  # cheap: nothing checked on disk yet
    with pytest.raises(sentinel.ConfigError):
        await client.open()
    with pytest.raises(sentinel.ConfigError):  # the next call tries again
        await atrack(client)
    await client.close()


async def test_one_client_serves_two_event_loops(broker: EmbeddedBroker, make_async_client: Any, topic: str) -> None:
    client = make_async_client(broker.bootstrap_servers)
    here = await atrack(client, 1)
    there = await asyncio.to_thread(asyncio.run, atrack(client, 2))  # another thread, its own loop
    assert await client.flush(timeout=30)
    assert set(event_ids(await read_topic(broker, topic, 2))) == {here, there}


# --- hooks ------------------------------------------------------------------------------------------------

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


async def test_before_send_runs_per_call_in_the_callers_context(
    broker: EmbeddedBroker, make_async_client: Any, topic: str
) -> None:
    def before_send(event: sentinel.TelemetryEvent) -> sentinel.TelemetryEvent | None:
        if event.service_name == "drop-me":
            return None
        if event.service_name == "broken-hook":
            raise RuntimeError("the hook failed")
        event.metadata["request_id"] = request_id.get()
        return event

    client = make_async_client(broker.bootstrap_servers, before_send=before_send)
    await client.open()

    async def handle(slot: int, service: str) -> str:  # a request handler with its own context
        request_id.set(f"r{slot}")
        return await atrack(client, slot, service=service)

    services = ["svc", "drop-me", "svc", "broken-hook", "svc"]
    results = await asyncio.gather(*(handle(n, s) for n, s in enumerate(services)), return_exceptions=True)
    assert [type(result) for result in results] == [str, str, str, RuntimeError, str]
    assert await client.flush(timeout=30)
    records = await read_topic(broker, topic, 3)
    assert {json.loads(r.value)["metadata"]["request_id"] for r in records} == {"r0", "r2", "r4"}
    assert (await client.stats()).dropped.get("before_send") == 1


async def test_on_delivery_is_called_with_the_delivered_ids(broker: EmbeddedBroker, make_async_client: Any) -> None:
    delivered: list[str] = []
    client = make_async_client(broker.bootstrap_servers, on_delivery=delivered.extend)
    sent = await asyncio.gather(*(atrack(client, n) for n in range(50)))
    assert await client.flush(timeout=30)
    await client.close(timeout=5)  # the flusher has run every callback
    assert set(delivered) == set(sent)


# --- fork ----------------------------------------------------------------------------------------------------


async def test_forked_child_sends_with_its_own_threads(
    broker: EmbeddedBroker, make_async_client: Any, topic: str
) -> None:
    client = make_async_client(broker.bootstrap_servers)
    parent_ids = [await atrack(client, n, service="parent") for n in range(20)]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a loop of its own, and no writer thread until it asks for one
        code = 1
        try:

            async def child() -> list[str]:
                ids = [await atrack(client, n, service="child") for n in range(20)]
                delivered = await client.flush(timeout=30)
                await client.close(timeout=5)
                return ids if delivered else []

            os.write(write, "\n".join(asyncio.run(child())).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while chunk := await asyncio.to_thread(os.read, read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child_ids = b"".join(chunks).decode().split()
    assert len(child_ids) == 20
    assert await client.flush(timeout=30)
    assert set(event_ids(await read_topic(broker, topic, 40))) == set(parent_ids) | set(child_ids)
