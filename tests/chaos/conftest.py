"""The chaos suite's broker (the kills, the seed and the closing lines are fixtures of tests/conftest.py).

``SENTINEL_CHAOS_ROUNDS`` sets the kills per durability mode (default 6, the CI budget);
``SENTINEL_CHAOS_SEED`` replays a run (every closing line names the seed it used).
"""

from __future__ import annotations

import pytest
from conftest import BrokerUnderTest


@pytest.fixture
def chaos_broker(broker: BrokerUnderTest) -> BrokerUnderTest:
    """The run's broker behind a proxy: ``proxy.cut()`` takes it away without losing what it holds."""
    return broker
