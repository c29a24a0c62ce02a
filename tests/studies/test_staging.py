"""Where trials stage checkpoints, and who clears what a stopped or killed trial left there."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs

from mtl_tune.studies.store._staging import (
    NODE_STAGING_DIR,
    clear_staging,
    drop_trial_staging,
    trial_staging,
)


def _left(folder: Path) -> Path:
    """A checkpoint a trial was staging when it was stopped."""
    epoch = folder / "epoch3-abc"
    epoch.mkdir(parents=True)
    (epoch / "model.safetensors").write_bytes(b"weights")
    return epoch


def test_a_trial_stages_in_its_own_folder_and_a_new_run_clears_the_old(tmp_path: Path) -> None:
    trial = tmp_path / "study" / "tune" / "main" / "t1"
    first = trial_staging(trial, "t1")
    # on a file system the staging folder is in the trial folder
    assert first == trial / ".staging" and first.is_dir()
    left = _left(first)
    # a new run of the trial starts from an empty one
    assert trial_staging(trial, "t1") == first and not left.exists()


def test_an_ended_trials_staging_is_dropped(tmp_path: Path) -> None:
    trial = tmp_path / "t1"
    _left(trial_staging(trial, "t1"))
    # the driver drops an ended trial's staging folder (a stopped trial never reaches its end)
    drop_trial_staging(str(trial), pyarrow.fs.LocalFileSystem(), "t1")
    assert not (trial / ".staging").exists()


def test_resume_clears_every_trials_staging(tmp_path: Path) -> None:
    study = tmp_path / "study"
    lefts = [_left(trial_staging(study / "tune" / exp / t, t))
             for exp, t in (("main", "a"), ("main", "b"), ("stage2", "c"))]
    node = trial_staging(None, "zz-test-node-trial")  # an object store's: this node's temp
    assert node.parent.name == NODE_STAGING_DIR
    _left(node)
    removed = clear_staging(study, ["zz-test-node-trial"])
    # every trial folder's staging folder and the node's one of the study's trial are gone
    assert len(removed) == 4 and not any(p.exists() for p in lefts) and not node.exists()
