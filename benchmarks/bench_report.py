"""The one table: each figure of ours beside its ratio to the baseline measured in the same run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Unit(Enum):
    PER_SECOND = "/s"
    MILLISECONDS = "ms"
    MEGABYTES = "MB"
    FACTOR = "x"


@dataclass(frozen=True)
class Value:
    amount: float
    unit: Unit
    what: str = ""  # "events", "records", "rows"...: said after the number of a rate

    def __str__(self) -> str:
        if math.isnan(self.amount):
            return "n/a"
        if self.unit is Unit.PER_SECOND:
            digits = 1 if self.amount < 100 else 0
            return f"{self.amount:,.{digits}f} {self.what}/s".replace("  ", " ")
        if self.unit is Unit.MILLISECONDS:
            digits = 3 if self.amount < 1 else 1
            return f"{self.amount:,.{digits}f} ms"
        if self.unit is Unit.MEGABYTES:
            return f"{self.amount:,.1f} MB"
        return f"{self.amount:.2f}x"


class Check(Enum):
    RATIO_AT_LEAST = "ratio >="
    RATIO_BELOW = "ratio <"
    VALUE_AT_MOST = "value <="
    VALUE_BELOW = "value <"


@dataclass(frozen=True)
class Target:
    check: Check
    bound: float

    def __str__(self) -> str:
        if self.check is Check.RATIO_AT_LEAST:
            return f">= {self.bound:g}x"
        if self.check is Check.RATIO_BELOW:
            return f"< {self.bound:g}x"
        symbol = "<=" if self.check is Check.VALUE_AT_MOST else "<"
        return f"{symbol} {self.bound:g}"

    def met(self, value: Value, ratio: float | None) -> bool | None:
        if self.check in (Check.RATIO_AT_LEAST, Check.RATIO_BELOW):
            if ratio is None or math.isnan(ratio):
                return None
            return ratio >= self.bound if self.check is Check.RATIO_AT_LEAST else ratio < self.bound
        if math.isnan(value.amount):
            return None
        return value.amount <= self.bound if self.check is Check.VALUE_AT_MOST else value.amount < self.bound


@dataclass(frozen=True)
class Row:
    """One line of the table. ``value`` None prints ``missing`` (e.g. a transport that does not exist)."""

    name: str
    value: Value | None
    baseline: str = ""  # the baseline row's name
    baseline_value: Value | None = None
    target: Target | None = None
    missing: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.baseline_value is None or self.baseline_value.amount == 0:
            return None
        return self.value.amount / self.baseline_value.amount

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        if self.value is None:
            return "FAIL" if not self.missing.startswith("n/a") else "n/a"
        met = self.target.met(self.value, self.ratio)
        return "n/a" if met is None else ("PASS" if met else "FAIL")


@dataclass
class Section:
    title: str
    rows: list[Row]


def format_ratio(ratio: float | None) -> str:
    if ratio is None or math.isnan(ratio):
        return ""
    if ratio >= 10:
        return f"{ratio:,.0f}x"
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x"


def render(sections: list[Section]) -> str:
    """A Markdown table (so it can be pasted into docs/benchmarks.md as it is)."""
    header = ["measurement", "ours / value", "baseline (same run)", "ratio", "target", "result", "note"]
    lines: list[list[str]] = []
    for section in sections:
        lines.append([f"**{section.title}**", "", "", "", "", "", ""])
        for row in section.rows:
            ratio = row.ratio
            lines.append(
                [
                    row.name,
                    str(row.value) if row.value is not None else row.missing,
                    f"{row.baseline}: {row.baseline_value}" if row.baseline_value is not None else "",
                    format_ratio(ratio),
                    str(row.target) if row.target is not None else "",
                    row.verdict,
                    row.note,
                ]
            )
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]

    def format_line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    out = [format_line(header), "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
    out.extend(format_line(line) for line in lines)
    return "\n".join(out)
