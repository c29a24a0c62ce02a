"""study.json: a study's metadata as one frozen dataclass, read by `read_meta` and written by
`write_meta` and nowhere else; its defaults live here, for a study whose file lacks a key (one
launched by an earlier mtl-tune, or edited by hand).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.studies.spec import MODES, SEARCHES
from mtl_tune.studies.store._relocation import moved_url, recorded_folder, register_move
from mtl_tune.studies.store._storage import META_FILE, OPTUNA_FILE
from mtl_tune.studies.store._study_store import StudyStore

logger = logging.getLogger(__name__)

# the JSON types each key may hold
_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "search": (str,), "metric": (str,), "mode": (str,),
    "optuna_storage": (str,), "folder": (str,), "address": (str,), "data_dir": (str, type(None)),
    "trainables": (list,), "experiments": (list,), "overrides": (dict,), "resources": (dict,),
    "objectives": (dict,), "stage_best": (dict,), "confirm": (dict,), "seeds": (int,),
    "num_samples": (int,),
    "simulated": (bool,), "epoch_seconds": (int, float),
    "wall_seconds": (int, float), "started_at": (int, float, str),
    "finished_at": (int, float, str),
}
_FIX = ("it is rewritten whole by every command, so it was damaged or edited: restore it from "
        "a backup or correct it by hand")


@dataclass(frozen=True)
class StudyMeta:
    """A study's metadata (study.json)."""

    name: str
    search: str = "grid"  # one of SEARCHES
    metric: str = "overall"  # the dev metric that picks best epochs and checkpoints
    mode: str = "max"
    objectives: Mapping[str, str] = field(default_factory=dict)  # metric -> mode (optuna-mo)
    trainables: tuple[str, ...] = ()
    overrides: Mapping[str, str] = field(default_factory=dict)  # the launch's --set
    resources: Mapping[str, float] = field(default_factory=dict)  # per trial: cpu, gpu
    seeds: int | None = None  # as launched, with --seeds applied
    num_samples: int | None = None  # as launched, with --samples applied
    # a rehearsal (`study launch --simulate`): trials that do not train, each epoch taking
    # `epoch_seconds`; resumed as it was launched
    simulated: bool = False
    epoch_seconds: float = 0.0
    optuna_storage: str = ""
    folder: str | None = None  # where it was launched or last resumed (not on a store)
    data_dir: str | None = None
    address: str = ""  # the Ray cluster it ran on ("" or "local": this machine)
    started_at: float | str | None = None  # epoch seconds (or text, by hand)
    finished_at: float | str | None = None  # None while it runs or after an interruption
    wall_seconds: float | None = None  # the drivers' time, summed over launch and resumes
    experiments: tuple[str, ...] = ()  # Ray Tune experiments in run order
    stage_best: Mapping[str, Any] = field(default_factory=dict)  # sequential: each stage's pick
    # `study confirm`: the configurations it re-runs on fresh seeds (`ConfirmPlan.to_json`)
    confirm: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this version does not know

    def to_json(self) -> str:
        values = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        values.update(trainables=list(self.trainables), experiments=list(self.experiments))
        return json.dumps({**values, **self.extra}, indent=2, default=str)


_KNOWN = {f.name for f in fields(StudyMeta)} - {"extra"}


def parse_meta(raw: Any, path: Path) -> StudyMeta:
    """study.json's parsed JSON, checked key by key.

    Raises:
        MtlTuneError: Not an object, a key of another type, or a search, mode or objective
            mode that does not exist (each with the file and the fix).
    """
    if not isinstance(raw, dict):
        raise MtlTuneError(f"{path}: must hold a JSON object, but holds "
                           f"{type(raw).__name__}; {_FIX}")
    for key, kinds in _TYPES.items():
        value = raw.get(key)
        if key in raw and (not isinstance(value, kinds)
                           or isinstance(value, bool) and bool not in kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise MtlTuneError(f"{path}: `{key}` must be {names}, but got {value!r}; {_FIX}")
    if raw.get("search", "grid") not in SEARCHES:
        raise MtlTuneError(f"{path}: search must be one of {SEARCHES}, but got "
                           f"{raw['search']!r}")
    if raw.get("mode", "max") not in MODES:
        raise MtlTuneError(f"{path}: mode must be one of {MODES}, but got {raw['mode']!r}")
    objectives = raw.get("objectives") or {}
    if not all(m in MODES for m in objectives.values()):
        raise MtlTuneError(
            f"{path}: objectives must map each metric to 'max' or 'min', as the spec's "
            f"`objectives` table does, but got {objectives!r}; correct it in {META_FILE}"
        )
    known = {k: v for k, v in raw.items() if k in _KNOWN}
    known.setdefault("name", path.parent.name)
    for key in ("trainables", "experiments"):
        if key in known:
            known[key] = tuple(str(v) for v in known[key])
    return StudyMeta(**known, extra={k: v for k, v in raw.items() if k not in _KNOWN})


def read_meta_file(path: Path) -> StudyMeta:
    """study.json as written, checked (`parse_meta`).

    Raises:
        MtlTuneError: It is not JSON (file:line), or `parse_meta` refuses it.
    """
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise MtlTuneError(f"{path}: not UTF-8 text ({err.reason}); {_FIX}") from None
    except json.JSONDecodeError as err:
        raise MtlTuneError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); {_FIX}") from None
    return parse_meta(raw, Path(path))


def read_meta(folder: Path) -> StudyMeta:
    """The study's metadata; for a study copied or moved here, its Optuna URL is the copy's
    (the file is not changed: a resuming driver records the move, `adopt_folder`)."""
    meta = read_meta_file(Path(folder) / META_FILE)
    old, here = _recorded(meta), Path(folder).resolve()
    if old is None or old == here or StudyStore.at(folder).on_store:
        return meta
    return replace(meta, optuna_storage=moved_url(meta.optuna_storage, old, here),
                   folder=str(here))


def _recorded(meta: StudyMeta) -> Path | None:
    return recorded_folder(meta.folder, meta.optuna_storage, OPTUNA_FILE)


def adopt_folder(folder: Path) -> Path | None:
    """For a driver resuming a study copied or moved to `folder` (under its lock): records the
    study's new place in its metadata and has the paths Ray Tune pickled with the experiment
    mapped here (`_relocation`). Returns the folder it came from, or None if it did not move."""
    if StudyStore.at(folder).on_store:
        return None
    old, here = _recorded(read_meta_file(folder / META_FILE)), Path(folder).resolve()
    if old is None or old == here:
        return None
    register_move(old, here)
    write_meta(folder, read_meta(folder))
    logger.info("study %s was moved or copied from %s: resumed in place", folder.name, old)
    return old


def write_meta(folder: Path, meta: StudyMeta) -> None:
    """Replaces study.json whole (on a store: uploaded before this returns)."""
    StudyStore.at(folder).write_text(META_FILE, meta.to_json())


def default_optuna_url(folder: Path) -> str:
    return f"sqlite:///{folder / OPTUNA_FILE}"
