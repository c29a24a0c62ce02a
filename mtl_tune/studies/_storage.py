"""Where studies live: the storage root, each study's folder, its metadata file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import SpecError

STORAGE_ENV = "MTL_TUNE_STORAGE"
META_FILE = "study.json"
SPEC_FILE = "spec.toml"
OPTUNA_FILE = "optuna.db"
TUNE_DIR = "tune"


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
