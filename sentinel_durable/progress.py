"""A small progress display for the command line: a bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """``Progress("draining")(done, total)`` draws events done, rate and ETA.

    On a terminal the bar redraws in place (at most ten times a second); elsewhere (a pipe,
    CI logs) a plain line is printed at most once a second, and once at the end.
    """

    WIDTH = 30

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self._started = time.monotonic()
        self._last_drawn = 0.0
        self._last_done = -1

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        interval = 0.1 if self.interactive else 1.0
        if not finished and (now - self._last_drawn < interval or done == self._last_done):
            return
        self._last_drawn, self._last_done = now, done
        elapsed = max(now - self._started, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        text = f"{self.label}: {done:,}/{total:,} events  {rate:,.0f}/s  ETA {_duration(eta)}"
        if self.interactive:
            filled = int(self.WIDTH * done / total) if total else self.WIDTH
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self.stream.write(f"\r[{bar}] {text}\033[K")
            if finished:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the line a bar left open (after a timeout)."""
        if self.interactive and self._last_done >= 0:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "--"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
