"""A written report as terminal text: its tables fitted to a width, its remarks, its page.

The tables are the ones report.md shows. A table wider than the terminal loses its least needed
columns first (named in a line under it) and, as a last resort, long cells are cut with "…".
"""

from __future__ import annotations

import shutil
import sys
import textwrap

import pandas as pd

from mtl_tune.reports._markup import numeric_columns
from mtl_tune.reports._output import ReportResult

PIPE_WIDTH = 120  # the width when stdout is not a terminal (a file, a pipe, CI)
# the columns a narrow terminal drops first, in order; report.md keeps them all
DROP_ORDER = ("Change", "Checkpoint", "Note", "Mean (paper)", "Δ base", "Trials", "Status")
CUT = "…"
MIN_CELL = 6  # a column is never cut narrower than this


def terminal_width() -> int:
    if sys.stdout.isatty():
        return shutil.get_terminal_size((PIPE_WIDTH, 24)).columns
    return PIPE_WIDTH


def _render(frame: pd.DataFrame) -> list[str]:
    """Columns two spaces apart: numbers right-aligned, text left-aligned."""
    if not len(frame.columns):
        return ["(empty)"]
    numbers = numeric_columns(frame)
    cells = []
    for name in frame.columns:
        column = [str(name), *map(str, frame[name])]
        width = max(map(len, column))
        right = str(name) in numbers
        cells.append([v.rjust(width) if right else v.ljust(width) for v in column])
    return ["  ".join(row).rstrip() for row in zip(*cells, strict=True)]


def fit_table(frame: pd.DataFrame, width: int) -> tuple[list[str], list[str]]:
    """The table's lines, none wider than `width`, and the columns left out to get there."""
    dropped: list[str] = []
    lines = _render(frame)
    for column in DROP_ORDER:
        if max(map(len, lines)) <= width:
            return lines, dropped
        if column in frame.columns and len(frame.columns) > 1:
            frame = frame.drop(columns=column)
            dropped.append(column)
            lines = _render(frame)
    while max(map(len, lines)) > width:
        # cut the widest column (header too) by the excess, down to a few characters
        sizes = {c: max(len(str(c)), *(len(str(v)) for v in frame[c])) for c in frame.columns}
        widest = max(sizes, key=lambda c: sizes[c])
        cap = max(MIN_CELL, sizes[widest] - (max(map(len, lines)) - width))
        if sizes[widest] <= MIN_CELL:
            break
        name = _cut(str(widest), cap)
        frame = frame.rename(columns={widest: name})
        frame[name] = [_cut(str(v), cap) for v in frame[name]]
        lines = _render(frame)
    return [line if len(line) <= width else line[: width - 1] + CUT for line in lines], dropped


def _cut(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[: cap - 1] + CUT


def report_text(result: ReportResult, width: int) -> str:
    """What `mtl-tune report ...` prints: every table, the remarks, then the page to open."""
    out: list[str] = []
    for title, frame in result.displays.values():
        lines, dropped = fit_table(frame, width)
        out += ["", title, *lines]
        if dropped:
            out += textwrap.wrap(
                f"(left out to fit {width} columns: {', '.join(dropped)}; all are in the report)",
                width,
            )
    for remark in result.remarks:
        out += textwrap.wrap(f"note: {remark}", width, subsequent_indent="  ")
    target = result.page if result.page is not None else result.folder
    out += ["", f"report: {target}"]
    return "\n".join(out)
