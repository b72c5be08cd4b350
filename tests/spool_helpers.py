"""Helpers shared by the spool tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sentinel_durable import EventBuilder
from sentinel_durable.spool import Spool, SpoolRecord


def record(text: str = "p", **metadata: str) -> SpoolRecord:
    event = (
        EventBuilder().service("svc").model("m").prompt(text, 1).response("r", 1, "stop")
        .latency(1).cost(0).metadata(metadata).build()
    )  # fmt: skip
    return SpoolRecord.from_event(event)


def records(count: int, size: int = 10) -> list[SpoolRecord]:
    return [record("x" * size, n=str(n)) for n in range(count)]


def drain_all(directory: Path, **options: Any) -> list[dict[str, Any]]:
    """Adopt every file of ``directory`` and return the pending events, in spool order, unacked."""
    found: list[dict[str, Any]] = []
    spool = Spool(directory, **options)
    try:
        spool.adopt_orphans()
        while (claim := spool.claim(10_000)) is not None:
            found.extend(json.loads(r.data) for r in claim.records)
    finally:
        spool.close()
    return found
