"""Where a trial writes each epoch's checkpoint before Ray Tune takes it into the trial folder.

A checkpoint is written whole into a staging folder, then `tune.report` copies it to
`checkpoint_NNNNNN` on the study's storage and the staging folder is removed. A trial killed in
between leaves its staging folder behind, so the folder is one the study owns, never the
system's temporary folder (where a killed trial's weights, up to a few hundred MB, would stay
forever):

- a study on a file system: `.staging/` inside the trial's own folder (`tune/<exp>/<trial>/`);
- a study on an object store: `<temp>/mtl-tune-staging/<trial id>/` on the trial's node (the
  store has no folder to write into).

Each run of a trial clears what an earlier, killed run of it left (`trial_staging`); the driver
clears an ended trial's (`drop_trial_staging`: a trial the scheduler stopped is stopped inside
its report, with a checkpoint still staged); and `study resume` clears every staging folder of
the study's trials (`clear_staging`), those that will not run again included.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from mtl_tune.studies.store._storage import TUNE_DIR

STAGING_DIR = ".staging"
NODE_STAGING_DIR = "mtl-tune-staging"


def _staging_folder(trial_folder: Path | None, trial_id: str) -> Path:
    if trial_folder is not None:
        return trial_folder / STAGING_DIR
    return Path(tempfile.gettempdir()) / NODE_STAGING_DIR / trial_id


def trial_staging(trial_folder: Path | None, trial_id: str) -> Path:
    """The trial's staging folder, emptied of what a killed run left, and made.

    Args:
        trial_folder: The trial's folder when the study is on a file system; None for a
            study on an object store.
        trial_id: Ray Tune's id of the trial (names the folder on an object store's node).
    """
    folder = _staging_folder(trial_folder, trial_id)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def end_staging(folder: Path) -> None:
    """Removes a trial's staging folder once the trial has reported its last checkpoint."""
    shutil.rmtree(folder, ignore_errors=True)
    if folder.parent.name == NODE_STAGING_DIR:
        try:
            folder.parent.rmdir()  # the last trial on this node: leave no empty folder either
        except OSError:
            pass  # other trials still stage there


def clear_staging(study: Path, trial_ids: Iterable[str]) -> list[Path]:
    """Removes the staging folders that killed runs of the study's trials left: under each
    trial folder of `study` (a local study), and this node's of each of `trial_ids`; returns
    those it removed."""
    found = [p for p in (study / TUNE_DIR).glob(f"*/*/{STAGING_DIR}") if p.is_dir()]
    found += [p for t in trial_ids if (p := _staging_folder(None, t)).is_dir()]
    for folder in found:
        end_staging(folder)
    return found


def drop_trial_staging(trial_dir: str, fs: object, trial_id: str) -> None:
    """Removes an ended trial's staging folders: in its trial folder when the storage is a file
    system (`fs`, pyarrow's), and this node's for `trial_id`."""
    if getattr(fs, "type_name", "") == "local":
        end_staging(Path(trial_dir) / STAGING_DIR)
    node = _staging_folder(None, trial_id)
    if node.is_dir():
        end_staging(node)
