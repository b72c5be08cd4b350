"""Helpers shared by the spool tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

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


class LeftSpool(NamedTuple):
    """A spool file left behind, and the ids of the events it holds (dead letters first)."""

    path: Path
    event_ids: list[str]


def leave_spool(directory: Path, count: int, *, size: int = 10, dead: int = 0, topic: str | None = None) -> LeftSpool:
    """A spool file of ``topic`` (None: no recorded topic) left as a process that is gone leaves it:
    ``count`` events of ``size`` characters, the first ``dead`` of them dead-lettered, released
    (checkpointed and unlocked) without being drained."""
    batch = records(count, size)
    spool = Spool(directory, topic=topic)
    spool.put_many(batch)
    if dead:
        claim = spool.claim(dead)
        assert claim is not None
        spool.dead_letter(claim, claim.records, "MessageSizeTooLargeError: too big")
    path = spool.active_path
    spool._owned.active.close()  # release the file without draining it, as a dead owner would
    spool._closed = True
    return LeftSpool(path, [record.event_id for record in batch])


def leave_spool_of_a_dead_process(directory: Path, count: int, size: int = 10, claim: int = 0) -> Path:
    """A real process spools ``count`` events, claims ``claim`` of them, and exits without closing the
    spool (after a WAL checkpoint, so that the events are in the database file itself): its file."""
    code = (
        "import os; from pathlib import Path; from sentinel_durable.spool import Spool; "
        "from spool_helpers import records; "
        f"s = Spool(Path({str(directory)!r})); s.put_many(records({count}, {size})); "
        f"s.claim({claim}) if {claim} else None; s._owned.active.shrink(); print(s.active_path, flush=True);"
        " os._exit(0)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    return Path(out.stdout.strip())
