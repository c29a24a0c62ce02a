"""Where studies live, and what a study folder holds: every file name of its layout is assigned
here and nowhere else.

    <storage>/<name>/study.json     metadata (search, metric, mode, storage URLs, times)
                     spec.toml      the spec as launched
                     trials.jsonl   the driver's record of trial events (`_trial_log`)
                     results.jsonl  the trials' reported results, as Tune reports them
                                    (`_result_digest`)
                     driver.json    the lock of the driver running the study (`_lock`)
                     seed-groups.jsonl  seed groups' results and decisions (`_group_log`)
                     optuna.db      the Optuna mirror (unless another storage was given)
                     tune/<exp>/    one Ray Tune experiment per stage (main, stage1, ...)
                     reports/       reports written by `mtl-tune report ...`
                     cache/         test-split scores of reports (`_score_cache`)

The root is a local folder (shared by every node of a cluster), or an object store URI
(`s3://bucket/prefix`): then the functions here work on a local staging copy of the store
(`_object_store`), and `storage_root` returns its folder.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from mtl_tune.exceptions import SpecError, did_you_mean
from mtl_tune.studies.spec import check_study_name
from mtl_tune.studies.store._object_store import (
    is_staged,
    reader_root,
    stored_folders,
    uri_of,
)
from mtl_tune.studies.store._store_pull import pull_study_files, stored_bytes
from mtl_tune.studies.store._study_store import StudyStore
from mtl_tune.studies.store._uris import file_uri_path, is_store_uri

logger = logging.getLogger(__name__)

STORAGE_ENV = "MTL_TUNE_STORAGE"
META_FILE = "study.json"
SPEC_FILE = "spec.toml"
OPTUNA_FILE = "optuna.db"
EVENTS_FILE = "trials.jsonl"
RESULTS_FILE = "results.jsonl"
LOCK_FILE = "driver.json"
GROUPS_FILE = "seed-groups.jsonl"
POPULATION_FILE = "population.jsonl"
TUNE_DIR = "tune"
REPORTS_DIR = "reports"
CACHE_DIR = "cache"


def storage_root(storage: str | Path | None) -> Path:
    """`--storage`, else `$MTL_TUNE_STORAGE`, else `~/.mtl-tune/studies`; for an object store
    URI, the folder of its local staging copy (`_object_store.reader_root`)."""
    chosen = storage or os.environ.get(STORAGE_ENV) or Path.home() / ".mtl-tune" / "studies"
    chosen = file_uri_path(chosen) or chosen
    if is_store_uri(chosen):
        return reader_root(str(chosen))
    root = Path(chosen).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise SpecError(f"the study storage {root} is a file, not a folder; give --storage a "
                        f"folder (made if missing) or an object store URI (s3://bucket/prefix)")
    return root


def study_folder(root: Path, name: str) -> Path:
    check_study_name(name)
    return root / name


def existing_study(root: Path, name: str, trial_files: bool = True) -> Path:
    """The study's folder (on a store: its staging copy, brought up to date; without
    `trial_files`, only the study's own files, `pull_study_files`)."""
    folder = study_folder(root, name)
    if trial_files:
        StudyStore.at(folder).pull(keep=(CACHE_DIR,))  # entries other reports here are writing
    else:
        pull_study_files(folder)
    if not (folder / META_FILE).is_file():
        if folder.is_dir() and any(folder.iterdir()):
            raise SpecError(
                f"study {name!r} in {uri_of(root)} has lost its {folder / META_FILE} (its other "
                "files are still there); restore that file from a backup, or move the folder "
                "away to launch a new study of that name"
            )
        names = study_names(root)
        raise SpecError(f"no study {name!r} in {uri_of(root)}{did_you_mean(name, names)}; "
                        f"studies there: {names or 'none'}")
    return folder


def study_holding(path: Path) -> Path | None:
    """The study folder that `path` (a checkpoint, a trial folder) lies in, if any."""
    resolved = Path(path).expanduser().resolve()
    return next((p for p in (resolved, *resolved.parents) if (p / META_FILE).is_file()), None)


def study_names(root: Path) -> list[str]:
    """The studies of a storage root (on a store: those it holds, none of them pulled)."""
    if is_staged(root):
        return stored_folders(root, META_FILE)
    return sorted(p.parent.name for p in root.glob(f"*/{META_FILE}")) if root.is_dir() else []


def disk_usage(folder: Path) -> int:
    """Bytes of every file under `folder` (a study folder: checkpoints, Tune's files, Optuna);
    on a store, of every object under the study."""
    if is_staged(folder):
        return stored_bytes(folder)
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
    runs whatever code their writer put there: the folder must be trusted like code. A symbolic
    link is followed: one that leads out of the study folder, or to a file or folder every user
    may write, is refused too.

    Raises:
        SpecError: The folder, or a folder, file or link target in it, is writable by every
            user, or a link in it leads out of it.
    """
    folder = Path(folder)
    inside = folder.resolve()
    for root, dirs, files in os.walk(folder):
        for path in [Path(root), *(Path(root) / d for d in dirs), *(Path(root) / f for f in files)]:
            target = path
            if path.is_symlink():
                target = path.resolve()
                if target != inside and inside not in target.parents:
                    raise SpecError(
                        f"{path} is a link to {target}, outside the study folder: resuming "
                        "would load what it points to; replace the link with the file itself, "
                        "or pass --trust if that place is as trusted as the study"
                    )
            try:
                mode = target.stat().st_mode
            except OSError:  # a broken link: nothing to load
                continue
            if mode & stat.S_IWOTH:
                raise SpecError(
                    f"{target} is writable by every user (mode {stat.filemode(mode)}): resuming "
                    "unpickles Ray's tuner.pkl and params.pkl from the study folder, which runs "
                    "code whoever wrote them; make it private (`chmod -R o-w "
                    f"{folder}`) or pass --trust if every user of this machine is trusted"
                )
