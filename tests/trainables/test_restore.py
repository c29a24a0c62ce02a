"""What a trial does when Tune restarts it from a checkpoint (after a driver was killed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ray import tune

from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.checkpoint import save_checkpoint
from mtl_tune.platform.presets import resolve_config
from mtl_tune.platform.train import Trainer
from mtl_tune.studies import Placement, trial_staging
from mtl_tune.trainables import _trainable
from mtl_tune.trainables._trainable import run_trial
from tests.helpers import tiny_trial

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _restart_from(
    monkeypatch: pytest.MonkeyPatch, folder: Path, config: dict[str, Any]
) -> list[dict[str, Any]]:
    """Runs the trial as Tune would restart it from `folder`; returns what it reported."""
    reports: list[dict[str, Any]] = []
    monkeypatch.setattr(tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(folder))
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    here = Placement(hostname="h", node_id=None, gpu_ids="", cpus=0.0, device="")
    monkeypatch.setattr(_trainable, "_placement", lambda: here)
    trial_folder = folder / "trial"
    monkeypatch.setattr(_trainable, "_staging", lambda: trial_staging(trial_folder, "t1"))
    run_trial("it6-balanced", config, None)
    # the trial wrote its checkpoints in its own folder's staging folder, gone once it ended
    assert not (trial_folder / ".staging").exists()
    return reports


@pytest.mark.parametrize("optimizer", [True, False])
def test_restart_trains_on_only_from_a_resumable_checkpoint(
    monkeypatch: pytest.MonkeyPatch,
    tiny_bert_dir: Path,
    tiny_data_dir: Path,
    tmp_path: Path,
    optimizer: bool,
) -> None:
    config = tiny_trial(tiny_bert_dir, tiny_data_dir, epochs=2, max_examples=16)
    cfg = resolve_config("it6-balanced", config)
    trainer = Trainer(cfg, build_bundle(cfg).for_config(cfg))
    result = trainer.run_epoch(1)
    save_checkpoint(trainer, tmp_path, result.metrics, optimizer=optimizer)
    reports = _restart_from(monkeypatch, tmp_path, config)
    if optimizer:
        # a checkpoint with optimizer state resumes: epoch 2 is trained and reported
        assert [r["epoch"] for r in reports] == [2.0]
    else:
        # a weights-only checkpoint is one a trial writes or keeps once it has ended (finished
        # or stopped early): restarted by a resumed study, the trial stays ended
        assert reports == []
