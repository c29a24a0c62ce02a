"""Writes a report's parts in every requested format: Markdown, LaTeX, CSV and one HTML page.

A report is a title, summary rows, tables (numeric data for CSV, display strings per style),
figures (PNG and SVG files), notes, the spec text and the environment. Figures are always saved
(the Markdown links them, the HTML page embeds the PNGs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from mtl_tune.reports import _html
from mtl_tune.reports._display import metric_columns
from mtl_tune.reports._latex import latex_table
from mtl_tune.reports._markup import best_cells, html_table, markdown_table, numeric_columns
from mtl_tune.reports._output import ReportResult
from mtl_tune.studies import SIMULATED_NOTE

FIGURES_DIR = "figures"


@dataclass(frozen=True)
class TablePart:
    name: str  # file stem and key in ReportResult.tables
    title: str
    data: pd.DataFrame  # numeric, written to CSV at full precision
    display: Callable[[str], pd.DataFrame]  # style ("md", "latex", "html") -> display strings
    notes: tuple[str, ...]


@dataclass(frozen=True)
class FigurePart:
    name: str
    caption: str
    png: Path
    svg: Path


class ReportWriter:
    """Collects a report's parts, then writes them all with `finish`."""

    def __init__(self, folder: Path, title: str, formats: Sequence[str], simulated: bool = False):
        self.folder = folder
        # a simulated study's report says so in its first line, in every format
        self.title = f"SIMULATED {title}" if simulated else title
        self.formats = tuple(formats)
        self.tables: list[TablePart] = []
        self.figures: list[FigurePart] = []
        self.files: list[Path] = []
        self.mark = [SIMULATED_NOTE] if simulated else []
        self.lead: list[str] = list(self.mark)  # the first lines: which row won, and by how much

    def table(
        self,
        name: str,
        title: str,
        data: pd.DataFrame,
        display: Callable[[str], pd.DataFrame],
        notes: Sequence[str] = (),
    ) -> None:
        self.tables.append(TablePart(name, title, data, display, tuple(notes)))

    def figure(self, name: str, figure: Figure, caption: str) -> None:
        """Saves `figure` as figures/<name>.png and .svg (no software URL in their metadata)."""
        folder = self.folder / FIGURES_DIR
        folder.mkdir(exist_ok=True)
        png, svg = folder / f"{name}.png", folder / f"{name}.svg"
        figure.savefig(png, dpi=100, metadata={"Software": None})
        figure.set_layout_engine("none")  # keep the layout just computed for the PNG
        figure.savefig(svg, metadata={"Creator": None})
        self.figures.append(FigurePart(name, caption, png, svg))
        self.files += [png, svg]

    def headline(self, lines: Sequence[str]) -> None:
        """The lines every format shows first, above the figures and tables."""
        self.lead = [*self.mark, *lines]

    def add_file(self, path: Path) -> None:
        self.files.append(path)

    def _write(self, name: str, text: str) -> None:
        path = self.folder / name
        path.write_text(text, encoding="utf-8")
        self.files.append(path)

    def finish(
        self,
        summary: Mapping[str, str],
        notes: Sequence[str],
        spec_text: str | None,
        environment: Mapping[str, str],
    ) -> ReportResult:
        """Writes every requested format and returns what was written."""
        if "csv" in self.formats:
            for part in self.tables:
                path = self.folder / f"{part.name}.csv"
                part.data.to_csv(path, index=False)
                self.files.append(path)
        if "latex" in self.formats:
            for part in self.tables:
                display = part.display("latex")
                tex = latex_table(display, part.title, f"tab:{part.name}", list(part.notes),
                                  metric_columns(display))
                self._write(f"{part.name}.tex", tex)
        if "md" in self.formats:
            self._write("report.md", self._markdown(summary, notes, spec_text, environment))
        if "html" in self.formats:
            self._write("report.html", self._html(summary, notes, spec_text, environment))
        all_notes = [n for part in self.tables for n in part.notes] + list(notes)
        pages = [self.folder / name for fmt, name in (("html", "report.html"), ("md", "report.md"))
                 if fmt in self.formats]
        return ReportResult(
            folder=self.folder,
            tables={part.name: part.data for part in self.tables},
            figures={part.name: part.png for part in self.figures},
            files=list(dict.fromkeys(self.files)),
            notes=list(dict.fromkeys(all_notes)),
            displays={part.name: (part.title, part.display("md")) for part in self.tables},
            remarks=list(dict.fromkeys(notes)),
            page=pages[0] if pages else None,
            headline=list(self.lead),
        )

    def _markdown(
        self,
        summary: Mapping[str, str],
        notes: Sequence[str],
        spec_text: str | None,
        environment: Mapping[str, str],
    ) -> str:
        lines = [f"# {self.title}", ""]
        lines += [f"**{line}**" for line in self.lead] + ([""] if self.lead else [])
        lines += [f"- **{k}**: {v}" for k, v in summary.items()] + [""]
        for part in self.tables:
            lines += [f"## {part.title}", "", markdown_table(part.display("md"))]
            lines += [f"- {note}" for note in part.notes] + [""]
        if self.figures:
            lines += ["## Figures", ""]
            for fig in self.figures:
                rel = fig.png.relative_to(self.folder).as_posix()
                lines += [f"![{fig.caption}]({rel})", "", f"*{fig.caption}* (SVG: "
                          f"`{fig.svg.relative_to(self.folder).as_posix()}`)", ""]
        if notes:
            lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
        env = pd.DataFrame({"item": list(environment), "value": list(environment.values())})
        lines += ["## Environment", "", markdown_table(env)]
        if spec_text is not None:
            lines += ["## Spec (spec.toml)", "", "```toml", spec_text.rstrip("\n"), "```", ""]
        return "\n".join(lines)

    def _html(
        self,
        summary: Mapping[str, str],
        notes: Sequence[str],
        spec_text: str | None,
        environment: Mapping[str, str],
    ) -> str:
        # what a reader needs first: the verdict, the figures, then the tables
        sections = []
        if self.figures:
            blocks = "".join(_html.figure_block(f.png, f.caption) for f in self.figures)
            sections.append(("Figures", blocks))
        for part in self.tables:
            display = part.display("html")
            best = metric_columns(display)
            bold = ["Bold: the best value of each score column."] if any(
                best_cells(display, [c for c in best if c in numeric_columns(display)]).values()
            ) else []
            sections.append((part.title, html_table(display, part.name, best)
                             + _html.notes_list([*bold, *part.notes])))
        if notes:
            sections.append(("Notes", _html.notes_list(notes)))
        sections.append(("Study", _html.meta_table(summary)))
        sections.append(("Environment", _html.meta_table(environment)))
        if spec_text is not None:
            sections.append(("Spec (spec.toml)", _html.pre_block(spec_text)))
        return _html.page(self.title, sections, _html.headline_block(self.lead))
