"""Finished trials keep weights only: their checkpoints lose the optimizer state.

Resuming needs the optimizer state (for MiniLM twice the size of the weights); predicting and
reporting do not. A finished or early-stopped trial is never resumed once Tune's saved state
holds it as ended, so the driver then drops the optimizer state of its kept checkpoints
(`_retention_callback.CheckpointRetention`), and once more at the end of an experiment for
every trial the study's record says ended (`drop_finished_optimizer_state`), which also covers
trials that ended while an earlier driver was killed. An interrupted trial (Ctrl-C, a failed
`fit`) keeps its optimizer state. On an object store the optimizer state's objects are deleted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mtl_tune.platform.checkpoint_files import OPTIMIZER_FILE, drop_optimizer_state
from mtl_tune.studies.store._saved_state import SETTLED_DIR, list_files

logger = logging.getLogger(__name__)


def drop_trial_optimizer_state(
    trial_dir: str | Path | None, filesystem: Any = None, listing: list[Any] | None = None
) -> int:
    """Drops the optimizer state of every checkpoint of one trial; returns the bytes freed.

    Args:
        trial_dir: The trial's folder, as Tune names it (on an object store: its path there).
        filesystem: The pyarrow file system of `trial_dir`; None or a local one: this machine.
        listing: On an object store, the trial folder's entries listed whole (recursively) by
            the caller; None: listed here.
    """
    if filesystem is not None and filesystem.type_name != "local":
        return _drop_in_store(str(trial_dir), filesystem, listing) if trial_dir else 0
    if not trial_dir or not Path(trial_dir).is_dir():
        return 0
    return sum(drop_optimizer_state(c) for c in Path(trial_dir).glob("checkpoint_*"))


def _drop_in_store(trial_dir: str, filesystem: Any, listing: list[Any] | None) -> int:
    """Deletes the `checkpoint_*/optimizer.pt` objects of a trial on an object store."""
    import pyarrow.fs

    selector = pyarrow.fs.FileSelector(trial_dir, recursive=True, allow_not_found=True)
    freed = 0
    try:
        for info in filesystem.get_file_info(selector) if listing is None else listing:
            if (info.type == pyarrow.fs.FileType.File and info.base_name == OPTIMIZER_FILE
                    and info.path.split("/")[-2].startswith("checkpoint_")):
                filesystem.delete_file(info.path)
                freed += info.size or 0
    except OSError as err:  # a store outage costs space, never the study; the end sweeps again
        logger.warning("optimizer state of %s not dropped: %s", trial_dir, err)
    return freed


def drop_finished_optimizer_state(results: Any, ended: set[str]) -> int:
    """The same for each trial of a Tune ResultGrid (or list of Results) whose id is in `ended`
    and that checkpoint retention has not settled already (`SETTLED_DIR`, read in one listing:
    on an object store each trial's sweep is a listing of its own).

    Args:
        results: What `Tuner.fit()` returned.
        ended: The ids of the trials the study's record says finished or were stopped by the
            scheduler. `fit()` also returns after a Ctrl-C with the interrupted trials looking
            well (no error): those keep their optimizer state, to resume from.
    """
    results = list(results)
    todo = ended - _settled(results[0]) if results else set()
    freed = sum(drop_trial_optimizer_state(r.path, r.filesystem) for r in results
                if r.error is None and (r.metrics or {}).get("trial_id") in todo)
    if freed:
        logger.info("freed %.0f MB of optimizer state of finished trials", freed / 2**20)
    return freed


def _settled(result: Any) -> set[str]:
    """The trials of a result's experiment that retention has marked settled."""
    import pyarrow.fs

    filesystem = result.filesystem or pyarrow.fs.LocalFileSystem()
    marks = f"{str(result.path).rstrip('/').rpartition('/')[0]}/{SETTLED_DIR}"
    try:
        return {i.base_name for i in list_files(filesystem, marks)}
    except OSError as err:  # each trial is swept then
        logger.debug("cannot list %s: %s", marks, err)
        return set()
