"""Bad input through the client's front door: every input is spooled exactly as validated, or
refused with ValidationError naming the field; never another exception, never half a batch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import build, offline_client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_schema import parse_wire

import sentinel_durable as sentinel
from sentinel_durable.spool import read_events, spool_files

# The client's flusher runs in the background with no broker, and kafka-python's reconnect
# jitter draws from the global random module, which hypothesis notices and warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")

SURROGATE = st.builds(lambda a, b: a + "\ud800" + b, st.text(max_size=5), st.text(max_size=5))
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | SURROGATE
    | st.binary(max_size=5) | st.sampled_from([math.nan, math.inf, -1, 2**32, 2**64, "x" * 5000]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
TRACK_ARGS = st.fixed_dictionaries(
    {
        "service": st.text(min_size=1, max_size=10) | JUNK,
        "model": st.text(min_size=1, max_size=10) | JUNK,
        "prompt": st.text(max_size=50) | JUNK,
        "response": st.text(max_size=50) | JUNK,
        "latency_ms": st.floats(min_value=0, max_value=1e6) | JUNK,
    },
    optional={
        "prompt_tokens": st.integers(0, 2**32 - 1) | JUNK,
        "completion_tokens": st.integers(0, 2**32 - 1) | JUNK,
        "cost_usd": st.floats(min_value=0, max_value=10) | JUNK,
        "finish_reason": st.text(max_size=10) | JUNK,
        "metadata": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3) | JUNK,
        "errors": st.lists(st.text(max_size=5), max_size=3) | JUNK,
        "trace_id": st.text(min_size=1, max_size=10) | JUNK,
        "prompt_embedding": st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3) | JUNK,
    },
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sentinel.Client, Path]]:
    """One fuzzed client for every example (a client per example would be slow), and its spool directory."""
    spool_dir = tmp_path_factory.mktemp("fuzz")
    client = offline_client(spool_dir, "fuzz", max_text_length=2000)
    yield client, spool_dir
    client.close(timeout=0)


def spooled(spool_dir: Path) -> list[bytes]:
    return [body for path in spool_files(spool_dir) for body in read_events(path)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(TRACK_ARGS)
def test_track_spools_what_it_validated_or_names_the_field(
    fuzzed: tuple[sentinel.Client, Path], arguments: dict[str, Any]
) -> None:
    client, spool_dir = fuzzed
    before = spooled(spool_dir)
    try:
        event_id = client.track(**arguments)
    except sentinel.ValidationError as exc:
        assert exc.field
        assert spooled(spool_dir) == before  # nothing of it was spooled
        return
    after = spooled(spool_dir)
    assert after[: len(before)] == before
    (new,) = after[len(before) :]
    document = parse_wire(new)
    assert document["event_id"] == event_id
    assert sentinel.TelemetryEvent.from_json(new).to_json() == new  # byte for byte as validated


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["latency_ms", "prompt.tokens", "model"]), JUNK), max_size=8))
def test_send_batch_is_all_or_nothing(
    fuzzed: tuple[sentinel.Client, Path], changes: list[tuple[bool, str, Any]]
) -> None:
    client, spool_dir = fuzzed
    events = []
    for n, (change, field, value) in enumerate(changes):
        event = build(n)
        if change:  # changed after build(): send_batch checks again
            if field == "prompt.tokens":
                event.prompt.tokens = value
            else:
                setattr(event, field, value)
        events.append(event)
    before = spooled(spool_dir)
    try:
        ids = client.send_batch(events)
    except sentinel.ValidationError as exc:
        assert exc.field.startswith("events[")
        assert spooled(spool_dir) == before
        return
    after = spooled(spool_dir)
    assert [parse_wire(body)["event_id"] for body in after[len(before) :]] == ids == [e.event_id for e in events]
