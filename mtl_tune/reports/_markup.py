"""Tables of display strings as Markdown, LaTeX and HTML, each escaped for its format."""

from __future__ import annotations

import html
import re

import pandas as pd

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # symbols the tables and notes use, outside what utf8 text mode always covers
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "†": r"$^\dagger$",
    "–": "--",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))


def escape_latex(text: str) -> str:
    return _LATEX_PATTERN.sub(lambda m: _LATEX_SPECIAL[m.group()], text)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *body]) + "\n"


def latex_table(frame: pd.DataFrame, caption: str, label: str, notes: list[str]) -> str:
    """A `table` environment; cells must already be LaTeX (see `escape_latex`)."""
    body = frame.to_latex(
        index=False,
        escape=False,
        caption=escape_latex(caption),
        label=label,
        position="htbp",
        column_format="l" * len(frame.columns),
    )
    if notes:
        lines = "\n".join(rf"\item {escape_latex(note)}" for note in notes)
        notes_block = r"\begin{itemize}\footnotesize" + "\n" + lines + "\n" + r"\end{itemize}"
        body = body.replace(r"\end{table}", notes_block + "\n" + r"\end{table}")
    return body


def html_table(frame: pd.DataFrame) -> str:
    """An HTML table of escaped text cells."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(False)
    )
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
