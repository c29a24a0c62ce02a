"""Where a report goes, and what a report call returns.

A report never silently replaces an earlier one: by default each run gets a new folder
`<study>/reports/<kind>-YYYYmmdd-HHMMSS[-N]` (for a study on an object store, reports are for
this machine: `<study>-<kind>-YYYYmmdd-HHMMSS[-N]` in the current folder); an explicit folder
that exists and is not empty is refused unless `force=True`, which writes into it: the files of
the earlier report there (listed in its `report-files.json`) are replaced or removed, so the
folder never mixes two reports, and any other file is left alone.

A report is written whole or not at all: into a staging sibling (`.NAME.partial-PID`), then
moved into place. A report that fails (a full disk, an error, Ctrl-C) leaves no half report and
the folder it would have replaced files in untouched.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from mtl_tune.exceptions import ConfigError, MtlTuneError, did_you_mean
from mtl_tune.platform.atomic import fsync_folder, replace_file, staging_of
from mtl_tune.platform.out_folder import refuse_special
from mtl_tune.studies import REPORTS_DIR, StudyStore

FORMATS = ("md", "latex", "csv", "html")
MANIFEST = "report-files.json"  # the files a report wrote: the next report with --force
# replaces exactly those


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
    headline: list[str] = field(default_factory=list)  # what the report says first
    page: Path | None = None  # the file to open: report.html, else report.md


def check_formats(formats: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"report formats must be among {FORMATS}, but got {unknown}"
                          f"{did_you_mean(unknown[0], FORMATS)}")
    return tuple(dict.fromkeys(formats))


def _choose_folder(study_folder: Path, kind: str, out: Path | str | None,
                  force: bool) -> tuple[Path, bool]:
    """The report folder (see the module docstring for the rules) and whether this call made it
    (a new dated folder is made empty at once, so that two reports never pick the same name).

    Raises:
        MtlTuneError: `out` is a file, or a non-empty folder and `force` is False.
    """
    if out is not None:
        folder = Path(out).expanduser()
        if folder.exists() and not folder.is_dir():
            raise MtlTuneError(f"report output {folder} is a file; pass a folder to --out")
        refuse_special(folder.resolve(), Path(out), "report")
        if folder.name in ("", ".."):  # no name to stage a sibling by
            folder = folder.resolve()
        if folder.is_dir() and any(folder.iterdir()) and not force:
            raise MtlTuneError(
                f"report folder {folder} is not empty and would be overwritten; pass another "
                "--out, leave --out out for a new dated folder, or pass --force"
            )
        return folder, False
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    if StudyStore.at(study_folder).on_store:
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
        return folder, True
    raise MtlTuneError(f"cannot find a free report folder name under {parent}")


class StagedReport:
    """A report being written in `folder` (a staging sibling) before it goes to `final`."""

    def __init__(self, final: Path, made: bool):
        self.final, self.made = final, made
        self.folder = staging_of(final)
        shutil.rmtree(self.folder, ignore_errors=True)  # left by a killed report of this pid
        self.folder.mkdir(parents=True)

    def put_in_place(self, result: ReportResult) -> ReportResult:
        """Moves every staged file into `final` (each rename whole), after removing the files an
        earlier report there listed in its manifest that this one does not write (so that the
        folder never mixes two reports; other files are the user's and stay), and returns
        `result` with its paths in `final`."""
        staged = sorted(p for p in self.folder.rglob("*") if not p.is_dir())
        written = sorted(str(p.relative_to(self.folder)) for p in staged) + [MANIFEST]
        earlier = _listed(self.final / MANIFEST)
        replace_file(self.folder / MANIFEST, json.dumps({"files": written}, indent=2).encode())
        for path in [*staged, self.folder / MANIFEST]:
            target = self.final / path.relative_to(self.folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        # only once the new report is in place: a failed move leaves the earlier one whole
        for name in sorted(set(earlier) - set(written)):
            stale = self.final / name
            if stale.is_file() and not stale.is_symlink():
                stale.unlink()
                _remove_empty_parents(stale.parent, self.final)
        shutil.rmtree(self.folder)
        fsync_folder(self.final)
        return dataclasses.replace(
            result,
            folder=self.final,
            figures={name: self._moved(p) for name, p in result.figures.items()},
            files=[self._moved(p) for p in result.files],
            page=None if result.page is None else self._moved(result.page),
        )

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.made:
            shutil.rmtree(self.final, ignore_errors=True)

    def _moved(self, path: Path) -> Path:
        try:
            return self.final / path.relative_to(self.folder)
        except ValueError:
            return path

    def _staged_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())

    def no_space(self) -> MtlTuneError:
        written = self._staged_bytes()
        free = shutil.disk_usage(self.folder).free
        kept = "" if self.made else f"; {self.final} is as it was"
        return MtlTuneError(
            f"no space left on the device holding {self.final.parent} while writing the report "
            f"{self.final} ({free / 2**20:.1f} MiB free; it had written {written / 2**20:.1f} "
            f"MiB): free some space and run the report again; nothing of it was kept{kept}"
        )


def _listed(manifest: Path) -> list[str]:
    """The files an earlier report's manifest lists, each inside its folder; [] without one."""
    try:
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in files if isinstance(f, str) and ".." not in Path(f).parts
            and not Path(f).is_absolute()]


def _remove_empty_parents(folder: Path, top: Path) -> None:
    while folder != top and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


@contextmanager
def report_folder(study_folder: Path, kind: str, out: Path | str | None,
                  force: bool) -> Iterator[StagedReport]:
    """A staging folder to write a report in; `put_in_place` it at the end. On any error the staging
    folder goes (and the dated folder this call made); a full disk becomes one MtlTuneError.

    Raises:
        MtlTuneError: `out` is a file, or a non-empty folder and `force` is False; the disk
            filled up.
    """
    final, made = _choose_folder(study_folder, kind, out, force)
    try:
        staged = StagedReport(final, made)
    except BaseException:
        if made:
            shutil.rmtree(final, ignore_errors=True)
        raise
    try:
        yield staged
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            error = staged.no_space()
            staged.discard()
            raise error from err
        staged.discard()
        raise
    except BaseException:
        staged.discard()
        raise
