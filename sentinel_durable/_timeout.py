"""The one rule for every ``timeout`` the public API takes (``flush``, ``close``,
``send(wait=True)``, their ``AsyncClient`` forms, ``shutdown_timeout``).

A number of seconds, ``>= 0``; ``None`` means no limit. NaN and negative numbers are a
``ValueError`` naming the parameter: a NaN deadline compares false with every time, so a wait
on it would never end.
"""

from __future__ import annotations

import enum
import math
import time
from typing import Any, Final

__all__ = ["WRITE_TIMEOUT", "WriteTimeout", "check_timeout", "deadline_of", "left_until", "send_timeout"]


class WriteTimeout(enum.Enum):
    """The default of ``send(wait=True, timeout=...)``: the client's ``write_timeout``."""

    DEFAULT = "write_timeout"

    def __repr__(self) -> str:
        return "write_timeout"


WRITE_TIMEOUT: Final = WriteTimeout.DEFAULT


def check_timeout(name: str, value: Any) -> float | None:
    """``value`` as float seconds, or ``None`` for no limit; ``ValueError`` naming ``name`` for NaN or a
    negative number, ``TypeError`` for what is not a number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None (no limit), not {type(value).__name__}")
    seconds = float(value)
    if math.isnan(seconds):
        raise ValueError(f"{name} must be a number of seconds or None (no limit), not NaN")
    if seconds < 0:
        raise ValueError(f"{name} must not be negative (got {seconds:g}); use None for no limit")
    return seconds


def send_timeout(timeout: Any, write_timeout: float) -> float | None:
    """``send(wait=True, timeout=...)``'s limit: ``write_timeout`` by default, else ``timeout`` checked."""
    return write_timeout if timeout is WRITE_TIMEOUT else check_timeout("timeout", timeout)


def deadline_of(timeout: float | None) -> float:
    """The ``time.monotonic()`` at which ``timeout`` (checked) runs out; infinity for no limit."""
    return math.inf if timeout is None else time.monotonic() + timeout


def left_until(deadline: float, cap: float | None = None) -> float | None:
    """Seconds left until ``deadline`` (never negative), at most ``cap``; ``None`` when unbounded
    (what ``threading.Event.wait`` takes for "no limit": it refuses infinity)."""
    left = deadline - time.monotonic()
    if cap is not None:
        left = min(left, cap)
    if math.isinf(left):
        return None
    return max(0.0, left)
