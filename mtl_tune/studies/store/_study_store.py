"""One study folder's files, wherever the study lives: `StudyStore.at(folder)`.

Every study file (metadata, spec copy, trial record, seed-group log, lock, score cache) is
written, appended, created and deleted through a `StudyStore`, so that none can be written on a
disk and forgotten on an object store:

- on a disk (`StudyStore`) a write replaces the file whole (a temporary sibling renamed into
  place) and a delete removes it;
- on an object store (`StagedStudyStore`) the study is read and written in a local staging copy
  (`_object_store`), and each write or append is uploaded before the call returns; a delete
  removes both copies. The lock is the one file read and written as the store holds it now,
  never through the copy: two drivers must see each other's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.platform.atomic import replace_text, storage_error
from mtl_tune.studies.store import _object_store as store
from mtl_tune.studies.store._json_lines import append_json_lines
from mtl_tune.studies.store._parts import append_part, part_files, parts_dir
from mtl_tune.studies.store._relocation import here
from mtl_tune.studies.store._store_pull import pull


class StudyStore:
    """A study folder on this machine's file system."""

    on_store = False  # whether the study lives on an object store

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @staticmethod
    def at(folder: Path | str) -> StudyStore:
        """The store of `folder` (a study folder, or a storage root's staging copy)."""
        folder = Path(folder)
        return StagedStudyStore(folder) if store.is_staged(folder) else StudyStore(folder)

    @staticmethod
    def open(where: str) -> StudyStore:
        """The store of the study at `where`, its `uri` as a Tune callback pickled it: a path
        (mapped where the study was moved or copied since), or a store URI, which maps into the
        staging copy of the driver running now (`_object_store.local_path`)."""
        return StudyStore.at(here(store.local_path(where)))

    @property
    def uri(self) -> str:
        """Where the study lives, for messages and Ray Tune: a path, or the store's URI."""
        return store.uri_of(self.folder)

    def write_text(self, name: str, text: str) -> None:
        """Replaces the file `name` (relative to the folder) whole.

        Raises:
            MtlTuneError: It cannot be written (no space, permissions, the store refused it);
                the previous version is kept.
        """
        try:
            replace_text(self.folder / name, text)
        except OSError as err:
            raise storage_error(err, name, self.folder) from None
        self.upload(name)

    def append_lines(self, name: str, lines: list[str], sync: bool = False) -> None:
        """Appends whole lines to the file `name` (flushed; `sync`: on the disk too)."""
        append_json_lines(self.folder / name, lines, sync=sync)
        self.upload(name)

    def upload(self, name: str, last: str | None = None) -> None:
        """Makes the store hold the file or folder `name` as written here (a disk: nothing to
        do). In a folder the file named `last` goes after the others: it marks the folder
        whole."""

    def pull(self, keep: tuple[str, ...] = ()) -> None:
        """Brings the folder up to date with where the study lives (a disk: it is that place);
        on a store the subfolders `keep` lose nothing the store lacks (`_store_pull.pull`)."""

    def has_files(self, name: str = "") -> bool:
        """Whether the study holds any file in its folder (or its entry `name`)."""
        path = self.folder / name
        return path.is_file() or path.is_dir() and any(path.iterdir())

    def remove(self) -> None:
        """Deletes the whole study folder."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def read_current(self, name: str) -> str:
        """The file as the study holds it now (on a store: the object, not the copy).

        Raises:
            FileNotFoundError: There is no such file.
        """
        return (self.folder / name).read_text()

    def write_current(self, name: str, text: str) -> None:
        """Replaces the file as the study holds it (on a store: one object written whole)."""
        replace_text(self.folder / name, text)

    def delete_current(self, name: str) -> None:
        """Deletes the file as the study holds it (missing: nothing to do)."""
        (self.folder / name).unlink(missing_ok=True)

    def create_new(self, name: str, text: str) -> bool:
        """Writes the file as the study holds it if there is none; whether it was written.
        On a disk the create is exclusive: of two callers, one gets False."""
        try:
            fd = os.open(self.folder / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return True


class StagedStudyStore(StudyStore):
    """A study on an object store, read and written through its local staging copy."""

    on_store = True

    def write_text(self, name: str, text: str) -> None:
        super().write_text(name, text)
        parts = parts_dir(self.folder / name)
        if parts.is_dir():  # an appended file rewritten whole: its parts are in the text
            store.delete_remote(parts)
            shutil.rmtree(parts, ignore_errors=True)

    def append_lines(self, name: str, lines: list[str], sync: bool = False) -> None:
        # the local file as a reader reads it, then its last part alone to the store (`_parts`)
        append_json_lines(self.folder / name, lines, sync=sync)
        data = "".join(line + "\n" for line in lines).encode()
        store.publish(append_part(self.folder / name, data, sync=sync))

    def upload(self, name: str, last: str | None = None) -> None:
        store.publish(self.folder / name, last=last)

    def pull(self, keep: tuple[str, ...] = ()) -> None:
        pull(self.folder, keep)

    def has_files(self, name: str = "") -> bool:
        return store.has_files(self.folder / name)  # the copy may hold less, or what was deleted

    def remove(self) -> None:
        store.delete_remote(self.folder)
        super().remove()

    def read_current(self, name: str) -> str:
        return store.read_object(self.folder / name).decode()

    def write_current(self, name: str, text: str) -> None:
        store.write_object(self.folder / name, text.encode())

    def delete_current(self, name: str) -> None:
        store.delete_remote(self.folder / name)

    def create_new(self, name: str, text: str) -> bool:
        # pyarrow writes objects unconditionally: two callers at once may both get True, and
        # the caller reads the object back after a while to learn whose write the store kept
        try:
            self.read_current(name)
        except FileNotFoundError:
            self.write_current(name, text)
            return True
        return False


@contextmanager
def driver_copy(root: Path, name: str, record: str) -> Iterator[Path]:
    """The storage root a driver of study `name` runs in: `root` itself on a disk; for a study
    on a store, a private staging copy (`driver_root`), removed when the driver ends, after one
    more upload of the trial record `record` (an upload that failed during the run)."""
    if not store.is_staged(root):
        yield root
        return
    driver = store.driver_root(root)
    try:
        yield driver
    finally:
        events = driver / name / record
        if events.is_file():
            try:
                for uploaded in part_files(events) or [events]:
                    store.publish(uploaded)
            except MtlTuneError as err:
                store.logger.error("the trial record of %s could not be uploaded: %s", name, err)
        store.release_driver_root(driver)
