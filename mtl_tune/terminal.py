"""Tables of display strings fitted to a terminal's width, for every command that prints one.

A table wider than the terminal first loses its least needed columns (`DROP_ORDER`), then
shows means without their spreads ("0.512 ± 0.010" -> "0.512"), then drops more columns
(`LATE_DROP`, then from the right); each loss is named under the table. The first column, the
row's name, is never cut; other long cells are cut with "…" only as a last resort.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
from collections.abc import Iterable

import pandas as pd

PIPE_WIDTH = 120  # the width when stdout is not a terminal (a file, a pipe, CI)
# the columns a narrow terminal drops first, in order; report.md keeps them all
DROP_ORDER = ("Change", "Checkpoint", "Note", "Mean (paper)", "Δ base", "Trials", "Status",
              "CPU-h", "GPU-h", "P(better)")
# then, once spreads are gone, these before any other (the study metric and Δ prev stay)
LATE_DROP = ("Seeds 80%", "SST acc", "PD acc", "STS r")
SPREADS = "± sd"  # how the spreads' removal is named
CUT = "…"
MIN_CELL = 6  # a column is never cut narrower than this
_NUMBER = re.compile(r"^[-+<–∞]?\s?[\d.]*$|^[-+]?\d")  # "0.512 ± 0.010", "+0.043", "–", "< 0.001"
_SPREAD = re.compile(r"^([-+]?\d[\d.]*) ± [\d.]+(?: (‡))?$")


def wrap(text: str, width: int, subsequent_indent: str = "") -> list[str]:
    """`text` in lines of at most `width`, broken only between words: a command or a path
    longer than the line stays whole on its own line, so that it can be copied."""
    return textwrap.wrap(text, width, subsequent_indent=subsequent_indent,
                         break_long_words=False, break_on_hyphens=False)


def terminal_width() -> int:
    """The terminal's columns; `$COLUMNS` when set (also for a pipe); else PIPE_WIDTH."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((PIPE_WIDTH, 24)).columns
    return PIPE_WIDTH


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    """The columns whose every cell is a number (or a number ± spread, or "–")."""
    return [
        str(c) for c in frame.columns
        if len(frame) and all(_NUMBER.match(str(v)) for v in frame[c])
    ]


def _aligned(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Column name -> its header and cells as printed: numbers right-aligned, text left-aligned,
    each to the column's width (made once per column, not once per attempt to fit)."""
    return {str(name): _align(str(name), frame[name]) for name in frame.columns}


def _align(name: str, values: Iterable[object]) -> list[str]:
    column = [name, *map(str, values)]
    right = len(column) > 1 and all(_NUMBER.match(v) for v in column[1:])
    width = max(map(len, column))
    return [v.rjust(width) if right else v.ljust(width) for v in column]


def _joined(columns: dict[str, list[str]]) -> list[str]:
    """The aligned columns two spaces apart."""
    if not columns:
        return ["(empty)"]
    return ["  ".join(row).rstrip() for row in zip(*columns.values(), strict=True)]


def _render(frame: pd.DataFrame) -> list[str]:
    return _joined(_aligned(frame))


def _mean_only(value: object) -> object:
    match = _SPREAD.match(str(value))
    return value if match is None else match.group(1) + (match.group(2) or "")


def fit_table(frame: pd.DataFrame, width: int,
              first: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """The table's lines, none wider than `width` but for a row name longer than it, and what
    was left out to get there; `first`: columns to drop before `DROP_ORDER`'s."""
    dropped: list[str] = []
    columns = _aligned(frame)
    lines = _joined(columns)

    def fits() -> bool:
        return max(map(len, lines)) <= width

    for column in (*first, *DROP_ORDER):
        if fits():
            return lines, dropped
        if column in frame.columns and len(frame.columns) > 1:
            frame = frame.drop(columns=column)
            del columns[str(column)]
            dropped.append(column)
            lines = _joined(columns)
    if not fits():
        means = frame.map(_mean_only)
        if not means.equals(frame):
            frame, columns = means, _aligned(means)
            lines = _joined(columns)
            dropped.append(SPREADS)
    late = [c for c in LATE_DROP if c in frame.columns]
    while not fits() and len(frame.columns) > 2:
        column = late.pop(0) if late else frame.columns[-1]
        frame = frame.drop(columns=column)
        del columns[str(column)]
        dropped.append(str(column))
        lines = _joined(columns)
    while not fits():
        # cut the widest column but the first (header too) by the excess, to a few characters
        sizes = {c: max(len(str(c)), *(len(str(v)) for v in frame[c]))
                 for c in frame.columns[1:]}
        if not sizes:
            break
        widest = max(sizes, key=lambda c: sizes[c])
        if sizes[widest] <= MIN_CELL:
            break
        cap = max(MIN_CELL, sizes[widest] - (max(map(len, lines)) - width))
        name = _cut(str(widest), cap)
        frame = frame.rename(columns={widest: name})
        frame[name] = [_cut(str(v), cap) for v in frame[name]]
        columns = {name if k == str(widest) else k: _align(name, frame[name])
                   if k == str(widest) else cells for k, cells in columns.items()}
        lines = _joined(columns)
    return lines, dropped


def _cut(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[: cap - 1] + CUT


def fitted(frame: pd.DataFrame, width: int | None = None, first: tuple[str, ...] = ()) -> str:
    """A table as a command prints it: fitted to the terminal, with what was left out named."""
    width = terminal_width() if width is None else width
    lines, dropped = fit_table(frame, width, first)
    if dropped:
        lines += wrap(f"(left out to fit {width} columns: {', '.join(dropped)})", width)
    return "\n".join(lines)
