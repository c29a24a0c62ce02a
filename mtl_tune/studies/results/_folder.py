"""Opening a study folder for reading: its metadata, its spec text and its experiments, in run
order (the layout is the store's). Neither Ray nor torch is imported, and nothing is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.studies.store import (
    META_FILE,
    OPTUNA_FILE,
    SPEC_FILE,
    TUNE_DIR,
    StudyMeta,
    TrialRecord,
    planned_trials,
    read_meta,
    read_trials,
)


@dataclass(frozen=True)
class StudyInfo:
    """What a report needs to know about a study besides its trial results."""

    folder: Path
    name: str  # the folder's name
    search: str  # grid | optuna | optuna-mo | sequential
    metric: str  # the dev metric that picks best epochs and checkpoints
    mode: str  # max | min
    trainables: tuple[str, ...]  # as listed in study.json (may be empty)
    data_dir: str | None
    started_at: str | None
    finished_at: str | None  # None while the study runs
    wall_seconds: float | None
    spec_text: str | None  # spec.toml, verbatim
    experiments: dict[str, Path]  # experiment (stage) name -> Ray Tune experiment folder
    notes: tuple[str, ...]  # what was missing and assumed
    optuna_storage: str | None = None  # the Optuna storage URL study.json names, if any
    objectives: tuple[tuple[str, str], ...] = ()  # (metric, mode) of a multi-objective search
    launched_as: str | None = None  # study.json's name, when the folder was copied or renamed
    planned_trials: int | None = None  # the trials its spec starts (None: no spec that reads)
    # the trial record, read once: (experiment, trial id) -> the trial's last known state
    records: Mapping[tuple[str, str], TrialRecord] = field(default_factory=dict)
    resources: Mapping[str, float] = field(default_factory=dict)  # per trial, as launched
    simulated: bool = False  # a rehearsal (`study launch --simulate`): no trial trained
    confirm: Mapping[str, Any] = field(default_factory=dict)  # `study confirm`'s plan, if any

    @property
    def optuna_url(self) -> str | None:
        """study.json's Optuna storage, else the study folder's optuna.db if there is one."""
        if self.optuna_storage:
            return self.optuna_storage
        path = self.folder / OPTUNA_FILE
        return f"sqlite:///{path.resolve()}" if path.is_file() else None


def _stage_key(name: str) -> tuple[Any, ...]:
    # "stage2" before "stage10"; "main" and other names by text
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def find_experiments(
    folder: Path, listed: list[str] | None = None,
    records: Mapping[tuple[str, str], TrialRecord] | None = None,
) -> dict[str, Path]:
    """The study's experiments, name -> Ray Tune experiment folder: those `listed` first, in that
    order, then any others in stage order ("stage2" before "stage10"). `records`: the trial
    record, if read already."""
    tune_dir = folder / TUNE_DIR
    records = read_trials(folder) if records is None else records
    names = {record.experiment for record in records.values()}
    if tune_dir.is_dir():
        names |= {p.name for p in tune_dir.iterdir() if p.is_dir() and any(p.iterdir())}
    found = sorted(names, key=_stage_key)
    first = [name for name in listed or [] if name in found]
    return {name: tune_dir / name for name in [*first, *(n for n in found if n not in first)]}


def _time_text(value: Any) -> str | None:
    """study.json times: epoch seconds (as `study launch` writes) or text, as ISO text."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value).isoformat(timespec="seconds")
    return str(value)


def open_study(folder: Path | str, empty_ok: bool = False) -> StudyInfo:
    """Reads a study folder's metadata, its spec and its trial record (each once), and finds its
    experiments.

    Args:
        folder: The study folder (`<storage>/<study-name>`).
        empty_ok: A study launched but without any experiment yet is opened (no experiments)
            instead of refused.

    Returns:
        The study's metadata, with `StudyMeta`'s defaults (grid search, max `overall`) where
        study.json is missing (an assumption listed in `notes`) or lacks a key.

    Raises:
        MtlTuneError: The folder holds no Ray Tune experiment (unless `empty_ok`), or
            study.json is malformed.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise MtlTuneError(f"study folder {folder} does not exist; check the name and --storage")
    notes: list[str] = []
    if (folder / META_FILE).is_file():
        meta = read_meta(folder)
    else:
        meta = StudyMeta(name=folder.name)
        notes.append(f"{META_FILE} is missing: assumed a grid study maximising overall")
    records = read_trials(folder)
    experiments = find_experiments(folder, list(meta.experiments), records)
    if not experiments and not empty_ok:
        raise MtlTuneError(
            f"{folder} holds no experiment (expected {TUNE_DIR}/<experiment>/); launch the study "
            "first with `mtl-tune study launch`"
        )
    spec_path = folder / SPEC_FILE
    return StudyInfo(
        folder=folder,
        name=folder.name,  # a copied or renamed study is itself: its hints name its folder
        launched_as=meta.name if meta.name != folder.name else None,
        search=meta.search,
        metric=meta.metric,
        mode=meta.mode,
        trainables=meta.trainables,
        data_dir=meta.data_dir or None,
        started_at=_time_text(meta.started_at),
        finished_at=_time_text(meta.finished_at),
        wall_seconds=None if meta.wall_seconds is None else float(meta.wall_seconds),
        spec_text=spec_path.read_text(encoding="utf-8") if spec_path.is_file() else None,
        experiments=experiments,
        notes=tuple(notes),
        optuna_storage=meta.optuna_storage or None,
        objectives=tuple(meta.objectives.items()),
        planned_trials=planned_trials(folder, meta) if (folder / META_FILE).is_file() else None,
        records=records,
        resources=dict(meta.resources),
        simulated=meta.simulated,
        confirm=dict(meta.confirm),
    )
