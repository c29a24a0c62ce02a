"""Where the CS224N data files are: the data folder, each split's file, and why one is unusable.

A path that exists but cannot be read as a file (a folder, a symbolic link loop, a link to
nothing) is reported as what it is: calling it "missing" would send the user looking for a
file that is there.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from mtl_tune.exceptions import DataError, MissingDataFile
from mtl_tune.platform.config import DATA_ENV
from mtl_tune.platform.tasks import task_spec

SPLITS = ("train", "dev", "test")


def _broken_link(path: Path) -> str | None:
    """What is wrong with `path` when it is a symbolic link that leads to no file, else None."""
    if not path.is_symlink() or path.exists():
        return None
    target = os.readlink(path)
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python 3.11 reports a loop this way
        return f"a symbolic link loop ({path} -> {target})"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return f"a symbolic link loop ({path} -> {target})"
    return f"a symbolic link to {target}, which does not exist"


def resolve_data_dir(data_dir: str | Path | None, given_as: str = "--data-dir") -> Path:
    """`data_dir` if given (`given_as` says where, for messages), else `$MTL_TUNE_DATA`; raises
    DataError when neither names a folder."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    if not chosen:
        raise DataError(
            f"no data folder given: pass --data-dir DIR or set {DATA_ENV} "
            "(or run `mtl-tune data fetch` to download the course's public files)"
        )
    folder = Path(chosen).expanduser()
    source = given_as if data_dir is not None else DATA_ENV
    broken = _broken_link(folder)
    if broken:
        raise DataError(
            f"data folder {folder} (from {source}) is {broken}; point the link at the folder "
            "with the CS224N files, or point --data-dir or MTL_TUNE_DATA at that folder itself"
        )
    if not folder.is_dir():
        raise DataError(
            f"data folder {folder} does not exist (from {source}); "
            "point --data-dir or MTL_TUNE_DATA at a folder with the CS224N files"
        )
    return folder


def refuse_unusable(path: Path, task: str, split: str) -> None:
    """Raises DataError when `path` exists in some form but is no readable file."""
    broken = _broken_link(path)
    if broken:
        raise DataError(
            f"data file {path} (task {task!r}, split {split!r}) is {broken}; "
            "point the link at the tab-separated file, or replace it with the file",
            path,
        )
    if path.is_dir():
        raise DataError(
            f"{path} is a folder, not a data file (task {task!r}, split {split!r}); "
            f"put the tab-separated file {path.name} there instead of the folder, "
            "or give the path of the file itself",
            path,
        )


def split_path(data_dir: Path, task: str, split: str) -> Path:
    """The file of a task's split: `<prefix>-<split>.csv`; for test also `-test-student.csv`.

    Raises:
        DataError: No such file, or a folder or broken link under the file's name (checked in
            the order the names are preferred); the message names the file, task, split and
            data setting.
    """
    spec = task_spec(task)
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, but got {split!r}")
    candidates = [data_dir / f"{spec.prefix}-{split}.csv"]
    if split == "test":
        candidates.append(data_dir / f"{spec.prefix}-test-student.csv")
    for path in candidates:
        refuse_unusable(path, task, split)
        if path.is_file():
            return path
    names = " or ".join(p.name for p in candidates)
    raise MissingDataFile(
        f"missing data file {candidates[0]} (task {task!r}, split {split!r}): expected {names} "
        f"in {data_dir}; set --data-dir or {DATA_ENV} to the folder that holds it, "
        "or give the file explicitly"
    )
