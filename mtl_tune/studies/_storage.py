"""Where studies live, and what a study folder holds: every file name of its layout is assigned
here and nowhere else.

    <storage>/<name>/study.json     metadata (search, metric, mode, storage URLs, times)
                     spec.toml      the spec as launched
                     trials.jsonl   the driver's record of trial events (`_trial_log`)
                     driver.json    the lock of the driver running the study (`_lock`)
                     seed-groups.jsonl  seed groups' results and decisions (`_group_log`)
                     optuna.db      the Optuna mirror (unless another storage was given)
                     tune/<exp>/    one Ray Tune experiment per stage (main, stage1, ...)
                     reports/       reports written by `mtl-tune report ...`
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import SpecError

logger = logging.getLogger(__name__)

STORAGE_ENV = "MTL_TUNE_STORAGE"
META_FILE = "study.json"
SPEC_FILE = "spec.toml"
OPTUNA_FILE = "optuna.db"
EVENTS_FILE = "trials.jsonl"
LOCK_FILE = "driver.json"
GROUPS_FILE = "seed-groups.jsonl"
TUNE_DIR = "tune"
REPORTS_DIR = "reports"


def storage_root(storage: str | Path | None) -> Path:
    """`--storage`, else `$MTL_TUNE_STORAGE`, else `~/.mtl-tune/studies`."""
    chosen = storage or os.environ.get(STORAGE_ENV) or Path.home() / ".mtl-tune" / "studies"
    return Path(chosen).expanduser().resolve()


def study_folder(root: Path, name: str) -> Path:
    if not name or "/" in name or name in (".", ".."):
        raise SpecError(f"a study name must be a plain folder name, but got {name!r}")
    return root / name


def existing_study(root: Path, name: str) -> Path:
    folder = study_folder(root, name)
    if not (folder / META_FILE).is_file():
        known = sorted(p.parent.name for p in root.glob(f"*/{META_FILE}")) if root.is_dir() else []
        raise SpecError(f"no study {name!r} in {root}; studies there: {known or 'none'}")
    return folder


def read_meta(folder: Path) -> dict[str, Any]:
    return json.loads((folder / META_FILE).read_text())


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    tmp = folder / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp, folder / META_FILE)


def default_optuna_url(folder: Path) -> str:
    return f"sqlite:///{folder / OPTUNA_FILE}"


def disk_usage(folder: Path) -> int:
    """Bytes of every file under `folder` (a study folder: checkpoints, Tune's files, Optuna)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # a file a running study just replaced
                continue
    return total


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KB', in powers of 1024."""
    units = ("B", "KB", "MB", "GB", "TB")
    step = 0
    while size >= 1024 and step < len(units) - 1:
        size, step = size / 1024, step + 1
    return f"{size:.0f} B" if step == 0 else f"{size:.1f} {units[step]}"


def check_private(folder: Path) -> None:
    """Refuses a study folder that other users can write to.

    Resuming unpickles Ray's `tuner.pkl` and `params.pkl` from the folder (Ray's design), which
    runs whatever code their writer put there: the folder must be trusted like code.

    Raises:
        SpecError: The folder, or a folder or file in it, is writable by every user.
    """
    for root, dirs, files in os.walk(folder):
        for path in [Path(root), *(Path(root) / d for d in dirs), *(Path(root) / f for f in files)]:
            mode = path.lstat().st_mode
            if mode & stat.S_IWOTH and not stat.S_ISLNK(mode):
                raise SpecError(
                    f"{path} is writable by every user (mode {stat.filemode(mode)}): resuming "
                    "unpickles Ray's tuner.pkl and params.pkl from the study folder, which runs "
                    "code whoever wrote them; make it private (`chmod -R o-w "
                    f"{folder}`) or pass --trust if every user of this machine is trusted"
                )
