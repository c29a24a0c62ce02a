"""Folders and files that are replaced whole or not at all, even by a kill -9 or a full disk.

A folder is written into a temporary sibling (`.NAME.partial-PID`), every file fsynced, and then
swapped in: the old folder is renamed to `NAME.old`, the new one to `NAME`, and `NAME.old` is
deleted (a folder cannot be renamed onto a non-empty one). Whatever the moment of a crash, a
complete folder exists under `NAME` or `NAME.old`; `existing_folder` finds it.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from mtl_tune.exceptions import MtlTuneError

logger = logging.getLogger(__name__)

OLD_SUFFIX = ".old"


def write_bytes(path: Path, data: bytes) -> None:
    """Writes `data` to `path` and flushes it to the disk (fsync)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def replace_file(path: Path, data: bytes) -> None:
    """Writes `data` to a temporary sibling, fsyncs it and renames it onto `path`: the file is
    whole, old or new, whatever the moment of a crash; a failed write (a full disk) leaves the
    old file as it was and no sibling behind.

    Raises:
        OSError: The write failed (`storage_error` makes the project's error of it).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write_bytes(tmp, data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def replace_text(path: Path, text: str) -> None:
    """`replace_file` for UTF-8 text."""
    replace_file(path, text.encode("utf-8"))


def fsync_folder(folder: Path) -> None:
    """Makes the folder's entries (created or renamed files) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def old_of(folder: Path) -> Path:
    return folder.with_name(folder.name + OLD_SUFFIX)


def staging_of(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.partial-{os.getpid()}")


def storage_error(err: OSError, what: str, where: Path) -> MtlTuneError:
    """The project's error for an OSError while writing `what` under `where`."""
    if err.errno == errno.ENOSPC:
        return MtlTuneError(
            f"no space left on the device holding {where} while writing {what}; free some space "
            "(e.g. delete old runs or studies) and run again; the previous version is kept"
        )
    detail = err.strerror or str(err)
    path = f" ({err.filename})" if err.filename else ""
    return MtlTuneError(f"cannot write {what} in {where}: {detail}{path}; the previous version "
                        "is kept")


def replace_folder(folder: Path, write: Callable[[Path], None], what: str = "files") -> Path:
    """Replaces `folder` with what `write(staging)` puts in an empty staging folder.

    Args:
        folder: The folder to create or replace.
        write: Fills the given (empty, existing) folder; its files should be fsynced.
        what: A name for messages, e.g. "checkpoint".

    Raises:
        MtlTuneError: Writing failed (a full disk named as such); `folder` is left as it was.
    """
    folder = Path(folder)
    staging = staging_of(folder)
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed writer of the same pid
    try:
        staging.mkdir(parents=True)
        write(staging)
        fsync_folder(staging)
        swap_in(staging, folder)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise storage_error(err, what, folder.parent) from err
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def swap_in(staging: Path, folder: Path) -> None:
    """Renames the complete `staging` to `folder`, through `folder.old` if `folder` exists."""
    old = old_of(folder)
    if folder.exists():
        if old.exists():  # `folder` is complete, so an `.old` beside it is left over
            shutil.rmtree(old)
        os.rename(folder, old)
    os.rename(staging, folder)
    fsync_folder(folder.parent)
    shutil.rmtree(old, ignore_errors=True)


def existing_folder(folder: Path, complete: Callable[[Path], bool]) -> Path | None:
    """`folder` if `complete(folder)`, else its `.old` twin left by an interrupted swap."""
    folder = Path(folder)
    if complete(folder):
        return folder
    old = old_of(folder)
    if complete(old):
        logger.warning("%s is missing or incomplete; using %s from before an interrupted write",
                       folder, old)
        return old
    return None
