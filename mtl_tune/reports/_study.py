"""A study folder on disk: its metadata (study.json), its spec text and its Ray Tune experiments.

Layout (written by `mtl-tune study launch`): `study.json`, `spec.toml`, `optuna.db` and
`tune/<experiment>/`, one Ray Tune experiment folder per stage (`main`, or `stage1`, `stage2`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import MtlTuneError

STUDY_FILE = "study.json"
SPEC_FILE = "spec.toml"
OPTUNA_FILE = "optuna.db"
TUNE_DIR = "tune"
SEARCHES = ("grid", "optuna", "sequential")
MODES = ("max", "min")


@dataclass(frozen=True)
class StudyInfo:
    """What a report needs to know about a study besides its trial results."""

    folder: Path
    name: str
    search: str  # grid | optuna | sequential
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

    @property
    def optuna_path(self) -> Path | None:
        path = self.folder / OPTUNA_FILE
        return path if path.is_file() else None


def _stage_key(name: str) -> tuple[Any, ...]:
    # "stage2" before "stage10"; "main" and other names by text
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def find_experiments(folder: Path) -> dict[str, Path]:
    """The Ray Tune experiment folders under `folder/tune`, in stage order."""
    tune_dir = folder / TUNE_DIR
    if not tune_dir.is_dir():
        return {}
    found = [
        path
        for path in tune_dir.iterdir()
        if path.is_dir() and any(path.glob("experiment_state-*.json"))
    ]
    return {path.name: path for path in sorted(found, key=lambda p: _stage_key(p.name))}


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise MtlTuneError(
            f"{path}:{err.lineno}: not valid JSON ({err.msg}); fix or delete the file"
        ) from None
    if not isinstance(data, dict):
        raise MtlTuneError(f"{path}: must hold a JSON object, but holds {type(data).__name__}")
    return data


def open_study(folder: Path | str) -> StudyInfo:
    """Reads a study folder's metadata and finds its experiments; nothing is written.

    Args:
        folder: The study folder (`<storage>/<study-name>`).

    Returns:
        The study's metadata, with defaults (grid search, max `overall`) where study.json lacks
        a key or is missing; each assumption is listed in `notes`.

    Raises:
        MtlTuneError: The folder holds no Ray Tune experiment, or study.json is malformed.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise MtlTuneError(f"study folder {folder} does not exist; check the name and --storage")
    experiments = find_experiments(folder)
    if not experiments:
        raise MtlTuneError(
            f"{folder} holds no Ray Tune experiment (expected {TUNE_DIR}/<experiment>/"
            "experiment_state-*.json); launch the study first with `mtl-tune study launch`"
        )
    notes: list[str] = []
    meta_path = folder / STUDY_FILE
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        meta = _read_metadata(meta_path)
    else:
        notes.append(f"{STUDY_FILE} is missing: assumed a grid study maximising overall")
    search = str(meta.get("search", "grid"))
    mode = str(meta.get("mode", "max"))
    if search not in SEARCHES:
        raise MtlTuneError(f"{meta_path}: search must be one of {SEARCHES}, but got {search!r}")
    if mode not in MODES:
        raise MtlTuneError(f"{meta_path}: mode must be one of {MODES}, but got {mode!r}")
    spec_path = folder / SPEC_FILE
    wall = meta.get("wall_seconds")
    return StudyInfo(
        folder=folder,
        name=str(meta.get("name", folder.name)),
        search=search,
        metric=str(meta.get("metric", "overall")),
        mode=mode,
        trainables=tuple(str(t) for t in meta.get("trainables", ())),
        data_dir=None if meta.get("data_dir") in (None, "") else str(meta["data_dir"]),
        started_at=meta.get("started_at"),
        finished_at=meta.get("finished_at"),
        wall_seconds=None if wall is None else float(wall),
        spec_text=spec_path.read_text(encoding="utf-8") if spec_path.is_file() else None,
        experiments=experiments,
        notes=tuple(notes),
    )
