"""compression='zstd' is logged once per client: LLM-Sentinel's ingestion cannot decompress it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

import sentinel_durable as sentinel

UNREACHABLE = ["127.0.0.1:9"]  # nothing is sent: the warning is about the configuration


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("sentinel_durable")]


def test_client_with_zstd_logs_one_warning_naming_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    client = sentinel.Client(brokers=UNREACHABLE, compression="zstd", spool_dir=tmp_path)
    try:
        client.track(service="s", model="m", prompt="p", response="r", latency_ms=1.0)
    finally:
        client.close(timeout=0.5)
    (record,) = [r for r in warnings_from(caplog) if "zstd" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "LLM-Sentinel cannot decompress" in record.getMessage()


def test_async_client_with_zstd_logs_one_warning_at_construction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    aclient = sentinel.AsyncClient(brokers=UNREACHABLE, compression="zstd", spool_dir=tmp_path)
    assert [r.levelno for r in warnings_from(caplog) if "zstd" in r.getMessage()] == [logging.WARNING]

    async def use() -> None:  # opening creates the Client underneath: still one warning
        await aclient.track(service="s", model="m", prompt="p", response="r", latency_ms=1.0)
        await aclient.close(timeout=0.5)

    asyncio.run(use())
    (record,) = [r for r in warnings_from(caplog) if "zstd" in r.getMessage()]
    assert "LLM-Sentinel cannot decompress" in record.getMessage()


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4"])
def test_other_codecs_log_no_compression_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture, codec: str) -> None:
    caplog.set_level(logging.WARNING)
    sentinel.Client(brokers=UNREACHABLE, compression=codec, spool_dir=tmp_path).close(timeout=0.5)
    assert [r for r in warnings_from(caplog) if "compression" in r.getMessage()] == []
