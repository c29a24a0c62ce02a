"""Report tables as LaTeX that pdflatex compiles: booktabs, ASCII only, numbers right-aligned,
the best value bold, no wider than the text.

Every character outside ASCII becomes a LaTeX command (Greek letters and symbols in math
mode, accented letters as accents), so a table needs no `inputenc` or Unicode engine. Text
between backticks is code: typewriter, with `--` kept as two hyphens and breaks allowed after
`/`, `=` and `-`, so a long path or command wraps instead of running off the page. A table
wider than the text is scaled down to `\\linewidth` (graphicx's `\\resizebox`); a narrower one
keeps its size. A document needs `\\usepackage{booktabs}` and `\\usepackage{graphicx}`.
"""

from __future__ import annotations

import unicodedata

import pandas as pd

from mtl_tune.reports._markup import best_cells
from mtl_tune.terminal import numeric_columns

PREAMBLE = r"\usepackage{booktabs} \usepackage{graphicx}"
_ASCII = {
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
    "<": r"$<$",
    ">": r"$>$",
    "|": r"$|$",
}
_SYMBOLS = {
    "±": r"$\pm$", "Δ": r"$\Delta$", "α": r"$\alpha$", "σ": r"$\sigma$", "χ": r"$\chi$",
    "μ": r"$\mu$", "²": r"$^2$", "√": r"$\surd$", "∞": r"$\infty$", "×": r"$\times$",
    "≤": r"$\leq$", "≥": r"$\geq$", "→": r"$\to$", "·": r"$\cdot$", "†": r"$^\dagger$",
    "‡": r"$^\ddagger$", "–": "--", "—": "---", "…": r"\ldots{}", "’": "'", "‘": "`",
    "“": "``", "”": "''", "\u00a0": "~",
}
_ACCENTS = {"\u0301": "'", "\u0300": "`", "\u0308": '"', "\u0302": "^", "\u0303": "~",
            "\u0327": "c", "\u030c": "v"}


def _char(c: str) -> str:
    if c in _ASCII:
        return _ASCII[c]
    if c.isascii():
        return c
    if c in _SYMBOLS:
        return _SYMBOLS[c]
    parts = unicodedata.normalize("NFD", c)
    base, mark = parts[0], parts[1:2]
    if base.isascii() and mark in _ACCENTS:
        return f"\\{_ACCENTS[mark]}{{{base}}}"
    return f"\\texttt{{[U+{ord(c):04X}]}}"  # legible, and never an error


def escape_latex(text: str) -> str:
    """Plain text as ASCII LaTeX (text mode)."""
    # "--seeds-advice" stays two hyphens, not an en dash
    return "".join("-{}" if c == "-" and text[i + 1:i + 2] == "-" else _char(c)
                   for i, c in enumerate(text))


def _code(text: str) -> str:
    breakable = escape_latex(text)
    for mark in ("/", "=", ",", "-", "."):
        breakable = breakable.replace(mark, mark + r"\allowbreak{}")
    return rf"\texttt{{{breakable}}}"


def latex_text(text: str) -> str:
    """A note: plain text, with `code` in typewriter that may break across lines."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: no code spans
        return escape_latex(text)
    return "".join(_code(p) if i % 2 else escape_latex(p) for i, p in enumerate(parts))


def latex_table(frame: pd.DataFrame, caption: str, label: str, notes: list[str],
                best: list[str] | None = None) -> str:
    """A `table` environment from display strings (not yet escaped): text columns left,
    number columns right, the highest value of each `best` column in bold."""
    numbers = numeric_columns(frame)
    marked = best_cells(frame, [c for c in best or [] if c in numbers])
    cells = pd.DataFrame({
        escape_latex(str(c)): [
            rf"\textbf{{{escape_latex(str(v))}}}" if i in marked.get(str(c), [])
            else escape_latex(str(v)) for i, v in enumerate(frame[c])
        ] for c in frame.columns
    })
    body = cells.to_latex(
        index=False, escape=False, caption=escape_latex(caption), label=label,
        position="htbp",
        column_format="".join("r" if str(c) in numbers else "l" for c in frame.columns),
    )
    fit = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"
    body = body.replace(r"\begin{tabular}", fit + "\n" + r"\begin{tabular}", 1)
    body = body.replace(r"\end{tabular}", r"\end{tabular}}", 1)
    bold = ["The best value of each score column is in bold."] if marked else []
    lines = [rf"\item {latex_text(note)}" for note in [*bold, *notes]]
    if lines:
        block = "\n".join([r"\begin{itemize}\footnotesize", *lines, r"\end{itemize}"])
        body = body.replace(r"\end{table}", block + "\n" + r"\end{table}")
    return f"% needs {PREAMBLE}\n{body}"
