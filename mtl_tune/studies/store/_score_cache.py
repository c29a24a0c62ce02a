"""Test-split scores kept in the study folder, so a second report re-scores nothing.

One entry per (trial, epoch, test files): `<study>/cache/test-scores/<key>/` holds `entry.json`
(the scores and what was missing) and the course-format prediction files. The key hashes the
trial id, the epoch and the bytes of each test file found, so new test files (or another data
folder) are scored afresh. Entries are written whole or not at all (`replace_folder`); a study
on a store gets each entry uploaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_tune.platform.atomic import existing_folder, replace_folder, write_bytes
from mtl_tune.studies.store._storage import CACHE_DIR as STUDY_CACHE_DIR
from mtl_tune.studies.store._study_store import StudyStore

CACHE_DIR = Path(STUDY_CACHE_DIR) / "test-scores"
ENTRY_FILE = "entry.json"
ENTRY_VERSION = 2  # what an entry holds; another version is another key (2: scores.json kept)


@dataclass(frozen=True)
class CachedScores:
    entry: dict[str, Any]  # as given to `cache_scores`
    folder: Path  # holds the cached prediction files


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def score_cache_key(trial_id: str, epoch: int, data_dir: Path) -> str:
    """The entry's name: a hash of the trial, the epoch and each task's test file bytes."""
    from mtl_tune.exceptions import MissingDataFile
    from mtl_tune.platform.data_files import split_path  # torch: only when a report scores
    from mtl_tune.platform.tasks import MAIN_TASKS

    files: dict[str, str | None] = {}
    for task in MAIN_TASKS:
        try:
            files[task] = _file_digest(split_path(data_dir, task, "test"))
        except MissingDataFile:
            files[task] = None
    text = json.dumps(
        {"entry": ENTRY_VERSION, "trial": str(trial_id), "epoch": int(epoch), "files": files},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _complete(folder: Path) -> bool:
    return (folder / ENTRY_FILE).is_file()


def read_cached_scores(study_folder: Path, key: str) -> CachedScores | None:
    """The entry of `key`, or None when the study holds none."""
    folder = existing_folder(study_folder / CACHE_DIR / key, _complete)
    if folder is None:
        return None
    try:
        entry = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable: score afresh and write it again
        return None
    return CachedScores(entry, folder) if isinstance(entry, dict) else None


def cache_scores(
    study_folder: Path, key: str, entry: Mapping[str, Any], files: Sequence[Path]
) -> None:
    """Stores `entry` (JSON-able) and copies of `files` as the entry of `key`."""

    def write(staging: Path) -> None:
        for path in files:
            shutil.copyfile(path, staging / path.name)
        write_bytes(staging / ENTRY_FILE, json.dumps(dict(entry), indent=2).encode())

    target = study_folder / CACHE_DIR / key
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_folder(target, write, "cached test scores")
    # the entry file says the entry is whole: it goes last
    StudyStore.at(study_folder).upload(target.relative_to(study_folder).as_posix(), last=ENTRY_FILE)
