"""One Ray Tune experiment's files where Tune writes them (a disk or an object store), as the
driver reads and trims them: `TuneFiles(storage)`, from a trial's `StorageContext`.

The driver hands the store Tune's storage context, never its file system: every call on that
file system (Tune's saved state, result rows, checkpoint deletion, optimizer state, a trial's
logs uploaded before a restart) is made here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mtl_tune.platform.checkpoint_files import OPTIMIZER_FILE
from mtl_tune.studies.store._lean import drop_trial_optimizer_state
from mtl_tune.studies.store._relocation import here
from mtl_tune.studies.store._retention import prune_trial, trial_rows
from mtl_tune.studies.store._saved_state import (
    SETTLED_DIR,
    SavedState,
    SavedTrial,
    list_files,
    snapshot,
    state_stamp,
)
from mtl_tune.studies.store._staging import drop_trial_staging

logger = logging.getLogger(__name__)


class TuneFiles:
    """The files of the experiment a Tune `StorageContext` names.

    A trial is named by its folder as Tune does (`trial.storage.trial_fs_path`: on a store, its
    path there)."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.fs = storage.storage_filesystem
        self.experiment: str = storage.experiment_fs_path
        self._listed: dict[str, list[Any]] = {}  # settled trial's folder -> its entries, pruned

    @property
    def on_disk(self) -> bool:
        """Whether Tune writes to a file system of this machine (or one its nodes share)."""
        return bool(self.fs.type_name == "local")

    def state_stamp(self) -> str | None:
        """Names Tune's newest saved state (None: none yet); it changes with each save.

        Raises:
            OSError: The storage cannot be listed.
        """
        return state_stamp(self.fs, self.experiment)

    def saved_state(self, stamp: str | None = None) -> SavedState | None:
        """Tune's newest saved state, trial id -> SavedTrial, each read when asked for (None:
        none readable yet), copied whole first (`snapshot`), from the files as `stamp` (the
        `state_stamp` just taken) has them.

        Raises:
            OSError: The storage cannot be read.
        """
        return snapshot(self.fs, self.experiment, stamp)

    def result_rows(self, trial_dir: str) -> list[dict[str, Any]]:
        """The trial's result rows as its `result.json` holds them in the storage."""
        return trial_rows(self.fs, trial_dir)

    def prune(self, trial_dir: str, saved: SavedTrial | None, metric: str, mode: str,
              keep: str, also_keep: frozenset[str] = frozenset()) -> bool:
        """Deletes the trial's superseded checkpoints (`_retention.prune_trial`); whether the
        trial has ended in Tune's saved state.

        Raises:
            OSError: The storage cannot be read or written.
        """
        # on a store, one listing of the whole folder serves the pruning and the settling
        listing = None if self.on_disk else list_files(self.fs, trial_dir, recursive=True)
        settled = prune_trial(self.fs, trial_dir, saved, metric, mode, keep, also_keep, listing)
        if listing is not None and settled:  # kept for `settle`, next
            self._listed[trial_dir] = listing
        return settled

    def settle(self, trial_dir: str, trial_id: str) -> None:
        """For a trial that ended and is never resumed: drops its checkpoints' optimizer state
        and its staging folders, then marks it settled (`settled`).

        Raises:
            OSError: The mark cannot be written (the trial is settled again by a later pass).
        """
        drop_trial_optimizer_state(trial_dir, self.fs, self._listed.pop(trial_dir, None))
        drop_trial_staging(trial_dir, self.fs, trial_id)
        if self.on_disk:  # a store has no folders to make
            self.fs.create_dir(f"{self.experiment}/{SETTLED_DIR}")
        with self.fs.open_output_stream(f"{self.experiment}/{SETTLED_DIR}/{trial_id}"):
            pass

    def settled(self) -> set[str]:
        """The ids of the trials `settle` has marked, in one listing (an experiment resumed
        after a kill passes them over: a trial that Tune's saved state holds as ended stays
        so); none when the storage cannot be listed now."""
        try:
            return {i.base_name for i in list_files(self.fs, f"{self.experiment}/{SETTLED_DIR}")}
        except OSError as err:
            logger.warning("cannot list the settled trials of %s: %s", self.experiment, err)
            return set()

    def copy_checkpoint(self, source: str, target: str) -> None:
        """Copies a checkpoint folder of one trial (`source`, a path on the storage) to
        `target` (another trial's), file by file where they are: on a store, the store copies
        and no byte passes through the driver. A copy cut by a kill is made again whole (each
        file is written over).

        Raises:
            FileNotFoundError: `source` is not on the storage, or keeps no optimizer state (a
                weights-only checkpoint, of a trial that ended, cannot be trained on).
            OSError: The storage cannot be read or written.
        """
        import pyarrow.fs

        source, target = source.rstrip("/"), target.rstrip("/")
        files = [i for i in list_files(self.fs, source, recursive=True)
                 if i.type == pyarrow.fs.FileType.File]
        if not any(i.base_name == OPTIMIZER_FILE for i in files):
            raise FileNotFoundError(
                f"checkpoint {source} is not on the storage with its optimizer state "
                f"({len(files)} files there): a run cannot continue from it")
        for info in files:
            dest = f"{target}/{info.path[len(source) + 1:]}"
            if self.on_disk:  # a store has no folders to make
                self.fs.create_dir(dest.rpartition("/")[0])
            self.fs.copy_file(info.path, dest)

    def located(self, trial_dir: str, name: str) -> tuple[str, Any]:
        """(path, file system) of the trial's checkpoint folder `name`: where Tune restores
        it from."""
        return f"{trial_dir.rstrip('/')}/{name}", self.fs

    def upload_if_longer(self, local: Path, trial_dir: str, name: str) -> None:
        """Copies the driver's own copy `local` of the trial's file `name` to the storage,
        unless the storage's is at least as long.

        Raises:
            OSError: The storage cannot be read or written.
        """
        upload_if_longer(local, self.fs, f"{trial_dir}/{name}")

    def place_here(self) -> None:
        """Points the storage (a new trial's) into the study's folder as it is now, when the
        study was copied or moved since Tune pickled the experiment (`_relocation`)."""
        if self.on_disk:
            self.storage.storage_fs_path = str(here(self.storage.storage_fs_path))


def upload_if_longer(local: Path, filesystem: Any, target: str) -> None:
    """Copies the file `local` to `target` on a pyarrow file system (Ray Tune's storage) unless
    the file there is at least as long.

    Raises:
        OSError: The file system cannot be read or written.
    """
    import pyarrow.fs

    (info,) = filesystem.get_file_info([target])
    if info.type == pyarrow.fs.FileType.File and info.size >= local.stat().st_size:
        return
    pyarrow.fs.copy_files(str(local), target, destination_filesystem=filesystem)
