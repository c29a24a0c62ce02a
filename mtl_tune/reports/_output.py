"""Where a report goes, and what a report call returns.

A report never silently replaces an earlier one: by default each run gets a new folder
`<study>/reports/<kind>-YYYYmmdd-HHMMSS[-N]` (for a study on an object store, reports are for
this machine: `<study>-<kind>-YYYYmmdd-HHMMSS[-N]` in the current folder); an explicit folder
that exists and is not empty is refused unless `force=True`, which writes into it (files of the
same name are replaced, others are left alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from mtl_tune.exceptions import ConfigError, MtlTuneError
from mtl_tune.studies import REPORTS_DIR, is_staged

FORMATS = ("md", "latex", "csv", "html")


@dataclass(frozen=True)
class ReportResult:
    """A written report: its folder, its tables as DataFrames, and the files written."""

    folder: Path
    tables: dict[str, pd.DataFrame]  # name -> numeric table (as in its CSV)
    figures: dict[str, Path]  # name -> PNG file (an SVG file lies beside it)
    files: list[Path]  # every file written, figures and leaderboard files included
    notes: list[str] = field(default_factory=list)  # the footnotes the report carries
    # name -> (title, display strings as in report.md), for a terminal
    displays: dict[str, tuple[str, pd.DataFrame]] = field(default_factory=dict)
    remarks: list[str] = field(default_factory=list)  # the notes not tied to a table
    page: Path | None = None  # the file to open: report.html, else report.md


def check_formats(formats: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"report formats must be among {FORMATS}, but got {unknown}")
    return tuple(dict.fromkeys(formats))


def prepare_output(study_folder: Path, kind: str, out: Path | str | None, force: bool) -> Path:
    """Creates and returns the report folder (see the module docstring for the rules).

    Raises:
        MtlTuneError: `out` is a file, or a non-empty folder and `force` is False.
    """
    if out is not None:
        folder = Path(out).expanduser()
        if folder.exists() and not folder.is_dir():
            raise MtlTuneError(f"report output {folder} is a file; pass a folder to --out")
        if folder.is_dir() and any(folder.iterdir()) and not force:
            raise MtlTuneError(
                f"report folder {folder} is not empty and would be overwritten; pass another "
                "--out, leave --out out for a new dated folder, or pass --force"
            )
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    if is_staged(study_folder):
        parent, stem = Path.cwd(), f"{study_folder.name}-{kind}-{stamp}"
    else:
        parent, stem = study_folder / REPORTS_DIR, f"{kind}-{stamp}"
    parent.mkdir(parents=True, exist_ok=True)
    for number in range(1, 1000):
        folder = parent / (stem if number == 1 else f"{stem}-{number}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise MtlTuneError(f"cannot find a free report folder name under {parent}")
