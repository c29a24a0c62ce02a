"""Tables of display strings as Markdown and HTML, each escaped for its format, and which cells
are numbers and which are best (the LaTeX tables, in `_latex.py`, use the same rules)."""

from __future__ import annotations

import re

import pandas as pd

from mtl_tune.terminal import numeric_columns


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *body]) + "\n"


_LEADING = re.compile(r"^[-+]?\d+(\.\d+)?")
WRAPPING = ("Change", "Note", "Description")  # long text columns; every other cell stays on a line


def _leading(value: object) -> float:
    match = _LEADING.match(str(value))
    return float(match.group()) if match else float("nan")


def best_cells(frame: pd.DataFrame, columns: list[str]) -> dict[str, list[int]]:
    """Per column, the row positions holding its highest leading number (ties: all of them)."""
    out = {}
    for column in columns:
        values = [_leading(v) for v in frame[column]]
        finite = [v for v in values if v == v]
        if len(finite) > 1:
            top = max(finite)
            out[column] = [i for i, v in enumerate(values) if v == top]
    return out


def html_table(frame: pd.DataFrame, table_id: str = "t", best: list[str] | None = None) -> str:
    """An HTML table through pandas' Styler, in a container that scrolls sideways when the
    table is wider than the page: text escaped, numbers and their headers right-aligned, a
    cell's line breaks kept (a row's change under its name, an interval under its mean), no
    other cell but long text wrapped, and the highest value of each `best` column in bold."""
    numbers = numeric_columns(frame)
    marked = best_cells(frame, [c for c in best or [] if c in numbers])
    broken = [str(c) for c in frame.columns if frame[c].astype(str).str.contains("\n").any()]

    def bold(column: pd.Series) -> list[str]:
        rows = marked.get(str(column.name), [])
        return ["font-weight: bold" if i in rows else "" for i in range(len(column))]

    headers = [{"selector": f"th.col{i}", "props": "text-align: right"}
               for i, c in enumerate(frame.columns) if str(c) in numbers]
    styler = (
        frame.style.hide(axis="index")
        .set_uuid(table_id)
        .set_table_attributes('class="data"')
        .set_table_styles(headers)
        .format(escape="html")
        .set_properties(subset=numbers, **{"text-align": "right"})
        .set_properties(subset=[c for c in frame.columns if c not in WRAPPING and c not in broken],
                        **{"white-space": "nowrap"})
        .set_properties(subset=[c for c in broken if c in numbers], **{"white-space": "pre"})
        .set_properties(subset=[c for c in broken if c not in numbers],
                        **{"white-space": "pre-line"})
        .apply(bold, axis=0)
    )
    return f'<div class="scroll">{styler.to_html()}</div>'
