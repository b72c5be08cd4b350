"""The demo's summary is the README's: three senders' worth of events, every one delivered."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import pytest

from sentinel_durable import demo
from sentinel_durable.cli import _parser
from sentinel_durable.testing import wait_until

README = Path(__file__).resolve().parent.parent / "README.md"


def summary_line(events: int) -> str:
    sent = 3 * events
    return f"Summary: sent {sent:,} | delivered {sent:,} | duplicates 0 | lost 0"


def test_readme_quotes_the_summary_of_the_default_demo() -> None:
    default = _parser().parse_args(["demo"]).events
    assert f"`{summary_line(default)}`" in README.read_text()


def test_demo_sends_exactly_three_senders_worth_even_when_the_killed_one_runs_ahead(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    events = 100
    start, kill = demo.Sender.__init__, demo.Sender.kill

    def start_recording_spool(self: demo.Sender, spool_dir: Path, *args: Any) -> None:
        self.spool_dir = spool_dir  # type: ignore[attr-defined]
        start(self, spool_dir, *args)

    def kill_after_a_head_start(self: demo.Sender) -> None:
        # Give sender #2 every chance to track more than it reported before the SIGKILL: the
        # race that made the first `make demo` say "sent 9,001". Only it holds events now.
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: (demo.pending(self.spool_dir) or 0) > events, 2.0)  # type: ignore[attr-defined]
        kill(self)

    monkeypatch.setattr(demo.Sender, "__init__", start_recording_spool)
    monkeypatch.setattr(demo.Sender, "kill", kill_after_a_head_start)
    assert demo.run_demo(events=events) == 0
    out = capsys.readouterr().out
    assert "killed with SIGKILL" in out
    (summary,) = [line for line in out.splitlines() if line.startswith("Summary:")]
    sent, delivered, lost = (int(n) for n in re.findall(r"(?:sent|delivered|lost) (\d+)", summary))
    assert (sent, delivered, lost) == (3 * events, 3 * events, 0)
