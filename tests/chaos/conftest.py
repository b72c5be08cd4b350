"""Fixtures of the chaos suite, and the closing lines it adds to pytest's output.

``SENTINEL_CHAOS_ROUNDS`` sets the kills per durability mode (default 6, the CI budget);
``SENTINEL_CHAOS_SEED`` replays a run (every closing line names the seed it used).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest
from conftest import BrokerUnderTest

DEFAULT_ROUNDS = 6

_report_key = pytest.StashKey[list[str]]()


@pytest.fixture
def chaos_broker(broker: BrokerUnderTest) -> BrokerUnderTest:
    """The run's broker behind a proxy: ``proxy.cut()`` takes it away without losing what it holds."""
    return broker


@pytest.fixture
def chaos_rounds() -> int:
    raw = os.environ.get("SENTINEL_CHAOS_ROUNDS", "").strip()
    rounds = int(raw) if raw else DEFAULT_ROUNDS
    if rounds < 1:
        raise pytest.UsageError(f"SENTINEL_CHAOS_ROUNDS must be at least 1, not {raw!r}")
    return rounds


@pytest.fixture
def chaos_seed() -> int:
    raw = os.environ.get("SENTINEL_CHAOS_SEED", "").strip()
    return int(raw) if raw else random.SystemRandom().randrange(1 << 32)


@pytest.fixture
def chaos_report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``report(line)``: print ``line`` in the terminal summary at the end of the run."""
    lines = request.config.stash.setdefault(_report_key, [])
    return lines.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_report_key, [])
    if lines:
        terminalreporter.section("chaos")
        for line in lines:
            terminalreporter.write_line(line)
