"""The report's LaTeX tables compile with pdflatex into an article, each within the text width."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mtl_tune.reports import report_ablation
from mtl_tune.reports._latex import escape_latex, latex_text
from tests.helpers import unavailable

DOCUMENT = r"""\documentclass{article}
\usepackage{booktabs}
\usepackage{graphicx}
\begin{document}
%s
\end{document}
"""


def _pdflatex() -> str:
    return shutil.which("pdflatex") or unavailable(
        "pdflatex is not installed (Debian: texlive-latex-base, texlive-latex-recommended)")


def test_the_report_tables_compile_and_fit_the_text(study: Path, tmp_path: Path) -> None:
    pdflatex = _pdflatex()
    report = report_ablation(study, out=tmp_path / "report", formats=("latex",),
                             n_resamples=50)
    tables = sorted(p.name for p in report.folder.glob("*.tex"))
    assert tables == ["dev.tex", "published.tex", "test.tex"]
    for name in tables:
        # ASCII only: no inputenc or Unicode engine needed
        assert (report.folder / name).read_bytes().isascii(), name
    body = "\n".join(rf"\input{{{name}}}" for name in tables)
    (report.folder / "paper.tex").write_text(DOCUMENT % body)
    run = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
                         cwd=report.folder, capture_output=True, text=True, timeout=120)
    log = (report.folder / "paper.log").read_text(errors="replace")
    # it compiles, with no error
    assert run.returncode == 0 and "\n! " not in log, log[-3000:]
    assert (report.folder / "paper.pdf").stat().st_size > 0
    # and no table or note runs past the text by more than 5 pt
    overfull = [float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]
    assert all(w <= 5.0 for w in overfull), overfull
    dev = (report.folder / "dev.tex").read_text()
    # numbers right-aligned, the row names left; the best value of a score column bold
    assert re.search(r"\\begin\{tabular\}\{l[lr]r{5,}\}", dev), dev[:600]
    assert r"\textbf{" in dev and "The best value of each score column is in bold." in dev
    # the notes' math is math, and an option keeps its two hyphens
    assert r"two-sided $\alpha$ = 0.05" in dev and r"--{}seeds-{}advice" not in dev
    assert r"-\allowbreak{}{}-\allowbreak{}seeds-\allowbreak{}advice}" in dev


@pytest.mark.parametrize(
    ("text", "latex"),
    [
        ("σ² / Δ², z(1-α/2)", r"$\sigma$$^2$ / $\Delta$$^2$, z(1-$\alpha$/2)"),
        ("0.512 ± 0.010 ‡", r"0.512 $\pm$ 0.010 $^\ddagger$"),
        ("p < 0.001, 50% & $5 #1 a_b", r"p $<$ 0.001, 50\% \& \$5 \#1 a\_b"),
        ("--seeds-advice – Pearson r ∈", r"-{}-seeds-advice -- Pearson r \texttt{[U+2208]}"),
        ("Fréchet naïve", r"Fr\'{e}chet na\"{i}ve"),
    ],
)
def test_text_becomes_ascii_latex(text: str, latex: str) -> None:
    assert escape_latex(text) == latex


def test_code_spans_are_typewriter_and_may_break() -> None:
    assert latex_text("run `mtl-tune study launch /a/b.toml --seeds 3` now") == (
        r"run \texttt{mtl-\allowbreak{}tune study launch /\allowbreak{}a/\allowbreak{}"
        r"b.\allowbreak{}toml -\allowbreak{}{}-\allowbreak{}seeds 3} now")
