"""Downloads from an object store into a staging copy (`_object_store`): a study brought up to
date (`pull`), a checkpoint's weights when a model is loaded from it (`fetch_checkpoint`), a
checkpoint named by its URI (`fetch_uri`). Each file is downloaded to a temporary sibling and
renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.platform.checkpoint_files import MODEL_FILE, OPTIMIZER_FILE
from mtl_tune.studies.store._object_store import (
    _digest,
    _listing,
    _open,
    _store_error,
    cache_root,
    remote,
    uri_of,
)
from mtl_tune.studies.store._parts import PARTS, assemble, parted_files, stored_as
from mtl_tune.studies.store._saved_state import SETTLED_DIR, SNAPSHOT_DIR, STATE_PATTERN

logger = logging.getLogger(__name__)

# checkpoint files a pull leaves in the store: the weights are fetched when a model is loaded,
# the optimizer state (resuming only) never
ON_DEMAND = (MODEL_FILE, OPTIMIZER_FILE)
# Ray Tune's files that no reader here opens, left in the store: its other log formats (a
# trial's `result.json` holds what they hold), and its driver's resume files beside an
# experiment's saved state (`Tuner.restore` reads them from the store) with retention's copies
# and marks
TUNE_ONLY = ("progress.csv", "params.pkl", "events.out.tfevents.*")
_LISTED: dict[Path, tuple[float, int]] = {}  # staged folder -> (when, bytes) its last pull listed
LISTED_FRESH_S = 60.0
_PART = ".download-"  # a file being downloaded: `<name>.download-<pid>`
_THREADS = 8
SAME_SECOND_NS = 2_000_000_000  # see `_current`


def _stamp(info: Any) -> int:
    return int(info.mtime_ns or 0)


def _download(fs: Any, source: str, info: Any, target: Path) -> None:
    part = target.with_name(f"{target.name}{_PART}{os.getpid()}-{threading.get_ident()}")
    for attempt in range(3):  # another reader's pull may remove a folder it found empty
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = open(part, "wb")
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    with fs.open_input_stream(source) as stream, handle:
        shutil.copyfileobj(stream, handle, 1 << 20)
    os.utime(part, ns=(_stamp(info), _stamp(info)))  # what `pull` compares with the store
    os.replace(part, target)


def _current(target: Path, info: Any) -> bool:
    """Whether the local copy is the stored object. A store may give times to the second: a
    copy made within 2 s of the object's time (its ctime, set when it was downloaded) may miss
    a rewrite of the same size in the same second, so it is not trusted."""
    try:
        local = target.stat()
    except FileNotFoundError:
        return False
    return (local.st_size == info.size and local.st_mtime_ns == _stamp(info)
            and local.st_ctime_ns - _stamp(info) >= SAME_SECOND_NS)


def pull(folder: Path, keep: tuple[str, ...] = ()) -> None:
    """Brings a staged study folder up to date with the store: new and changed files are
    downloaded (not the checkpoints' weights and optimizer state), files the store no longer
    holds are deleted, except under the subfolders `keep` (which other processes may be
    writing into before they upload). A plain local folder is left alone."""
    where = remote(folder)
    if where is None:
        return
    fs, base = where
    stored = _listing(fs, base)
    _LISTED[folder] = (time.monotonic(), sum(info.size or 0 for info in stored.values()))
    _bring(folder, fs, base, stored, _read_here(stored),
           lambda: sorted(folder.rglob("*"), reverse=True), keep)


def pull_study_files(folder: Path) -> None:
    """`pull` of a staged study folder's own files alone: those at its top (metadata, spec,
    trial record, results digest, seed-group log, lock) and their parts, not its subfolders
    (Tune's experiments, reports, cache). It lists a few folders, however many trials the
    study has; the subfolders' copies are left as an earlier pull left them."""
    import pyarrow.fs

    where = remote(folder)
    if where is None:
        return
    fs, base = where
    try:
        top = fs.get_file_info(pyarrow.fs.FileSelector(base, allow_not_found=True))
        parts = [i.path for i in top if i.type == pyarrow.fs.FileType.Directory
                 and i.base_name.endswith(PARTS)]
        listed = [*top, *(i for path in parts for i in fs.get_file_info(
            pyarrow.fs.FileSelector(path, allow_not_found=True)))]
    except OSError as err:
        raise _store_error(err, "listing", uri_of(folder)) from None
    stored = {i.path[len(base) + 1:]: i for i in listed
              if i.type == pyarrow.fs.FileType.File and i.path.startswith(base + "/")}
    _bring(folder, fs, base, stored, set(stored), lambda: [
        *(p for p in folder.iterdir() if p.is_file()), *folder.glob(f"*{PARTS}/*")], ())


def _bring(folder: Path, fs: Any, base: str, stored: dict[str, Any], wanted_names: set[str],
           local_paths: Callable[[], list[Path]], keep: tuple[str, ...]) -> None:
    """Downloads the `wanted_names` of the `stored` files that the copy lacks or holds older,
    assembles the appended files, then deletes those of `local_paths()` (files before their
    folders) that the store no longer holds, except under `keep`. `fs`, `base`: where the
    folder is stored."""
    local = stored_as(set(stored))  # an appended file's base goes beside its parts
    wanted = {rel: stored[rel] for rel in wanted_names}
    stale = [rel for rel, info in wanted.items() if not _current(folder / local[rel], info)]
    try:
        with ThreadPoolExecutor(_THREADS) as pool:
            list(pool.map(lambda rel: _download(
                fs, f"{base}/{rel}", wanted[rel], folder / local[rel]), stale))
    except OSError as err:
        raise _store_error(err, "downloading", uri_of(folder)) from None
    if not folder.is_dir():
        return
    parted = parted_files(set(stored))
    for name in parted:
        assemble(folder / name)
    kept = set(local.values()) | parted
    for path in local_paths():
        relative = path.relative_to(folder).as_posix()
        if any(relative == k or relative.startswith(k + "/") for k in keep):
            continue
        try:
            if path.is_file() and relative not in kept and _PART not in path.name:
                path.unlink(missing_ok=True)
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        except OSError:  # another reader of this cache changed it meanwhile
            continue
    logger.debug("pulled %s: %d of %d files downloaded", uri_of(folder), len(stale), len(wanted))


def _read_here(stored: dict[str, Any]) -> set[str]:
    """The stored files that a pull brings here (`ON_DEMAND` and `TUNE_ONLY` stay)."""
    experiments = {rel.rpartition("/")[0] for rel in stored
                   if fnmatch.fnmatch(rel.rpartition("/")[2], STATE_PATTERN)}
    out = set()
    for rel in stored:
        folder, _, name = rel.rpartition("/")
        if (name in ON_DEMAND or any(fnmatch.fnmatch(name, p) for p in TUNE_ONLY)
                or {SNAPSHOT_DIR, SETTLED_DIR} & set(rel.split("/"))
                or folder in experiments and not fnmatch.fnmatch(name, STATE_PATTERN)):
            continue
        out.add(rel)
    return out


def stored_bytes(path: Path) -> int:
    """Bytes the store holds under a staged folder (the weights a pull left out included): as
    this process's pull of it listed them in the last minute, else listed now."""
    listed = _LISTED.get(path)
    if listed is not None and time.monotonic() - listed[0] < LISTED_FRESH_S:
        return listed[1]
    where = remote(path)
    return 0 if where is None else sum(info.size or 0 for info in _listing(*where).values())


def fetch_checkpoint(folder: Path) -> Path:
    """Downloads the weights of a staged checkpoint folder if they are not here yet (once:
    later calls find them); a plain local folder is returned as it is."""
    where = remote(folder)
    if where is None:
        return folder
    fs, base = where
    info = _listing(fs, base).get(MODEL_FILE)
    if info is not None and not _current(folder / MODEL_FILE, info):
        logger.info("downloading the weights of %s", uri_of(folder))
        try:
            _download(fs, f"{base}/{MODEL_FILE}", info, folder / MODEL_FILE)
        except OSError as err:
            raise _store_error(err, "downloading", uri_of(folder)) from None
    return folder


def fetch_uri(uri: str) -> Path:
    """A checkpoint on a store (`predict s3://.../checkpoint_000003`) as a folder in the cache,
    downloaded once (every file but the optimizer state)."""
    uri = uri.rstrip("/")
    fs, base = _open(uri)
    folder = cache_root() / "checkpoints" / _digest(uri)
    stored = _listing(fs, base)
    if not stored:
        raise MtlTuneError(f"no checkpoint at {uri}: the store holds no file under it; check "
                           "the URI (e.g. with `mtl-tune report search`'s checkpoint column)")
    try:
        for rel, info in stored.items():
            if Path(rel).name != OPTIMIZER_FILE and not _current(folder / rel, info):
                _download(fs, f"{base}/{rel}", info, folder / rel)
    except OSError as err:
        raise _store_error(err, "downloading", uri) from None
    return folder
