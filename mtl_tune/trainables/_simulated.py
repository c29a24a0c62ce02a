"""The simulated trial of a rehearsal (`study launch --simulate`): it trains nothing and imports
no torch, and otherwise behaves as a real trial does.

Per epoch it waits `epoch_seconds`, takes its dev scores from the response surface
(`platform/response_surface.py`), keeps patience as the trainer does, reports one `EpochReport`
(device "simulated") and writes a checkpoint of a few hundred bytes in a real one's layout: its
state (`simulated_state.json`) and, while the trial can still resume, a stand-in for the
optimizer state, which the driver drops once the trial ended. A study's scheduler, searcher,
seed groups, records and reports see what they would see of real trials.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ray import tune

from mtl_tune.platform.checkpoint_files import OPTIMIZER_FILE, SIMULATED_STATE_FILE
from mtl_tune.platform.patience import patience_ran_out, patience_step
from mtl_tune.platform.presets import resolve_config
from mtl_tune.platform.response_surface import simulated_scores
from mtl_tune.studies import SEED_GROUP_KEY, EpochReport, TrialReport, end_staging, study_keys
from mtl_tune.trainables import _context

SIMULATED = "simulated"  # the trainable's name and the device its trials report


def _restored() -> dict[str, Any] | None:
    """The state of the checkpoint Tune restarts this trial from: None for a fresh trial, {} for
    one that had ended (its checkpoints keep no optimizer state)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        if not (Path(folder) / OPTIMIZER_FILE).is_file():
            return {}
        state: dict[str, Any] = json.loads((Path(folder) / SIMULATED_STATE_FILE).read_text())
        return state


def run_simulated(config: Mapping[str, Any], epoch_seconds: float) -> None:
    training, study = study_keys(config)
    cfg = resolve_config(None, training)
    grouped = SEED_GROUP_KEY in study  # its group's scheduler judges patience on the mean
    patience, group_patience = (0, cfg.patience) if grouped else (cfg.patience, 0)
    state = _restored()
    if state == {}:
        return  # a trial that had ended stays ended, as a real one does
    state = state or {"epochs_done": 0, "best_overall": -math.inf,
                      "patience_reference": -math.inf, "stale_epochs": 0}
    placement = _context.placement(SIMULATED)
    staging = _context.staging()
    scored = dataclasses.asdict(cfg)  # the preset's values with the trial's
    for epoch in range(state["epochs_done"] + 1, cfg.epochs + 1):
        time.sleep(epoch_seconds)
        scores = simulated_scores(scored, epoch)
        reference, stale = patience_step(state["patience_reference"], state["stale_epochs"],
                                         scores["overall"], cfg.min_delta)
        state = {"epochs_done": epoch, "best_overall": max(state["best_overall"],
                                                            scores["overall"]),
                 "patience_reference": reference, "stale_epochs": stale}
        stop = patience_ran_out(stale, patience)
        training_numbers = {
            "epoch": float(epoch), "eval_seconds": 0.0, "lr": cfg.lr,
            "epoch_seconds": epoch_seconds, "examples_per_second": 0.0,
            "tokens_per_second": 0.0, "train_examples": 0.0, "steps": 0.0,
        }
        report = EpochReport(scores=scores, training=training_numbers, placement=placement,
                             progress=TrialReport(
                                 patience=patience, stale_epochs=stale,
                                 group_patience=group_patience, min_delta=cfg.min_delta,
                                 epochs_planned=cfg.epochs, best_overall=state["best_overall"]))
        with tempfile.TemporaryDirectory(dir=staging, prefix=f"epoch{epoch}-") as tmp:
            (Path(tmp) / SIMULATED_STATE_FILE).write_text(json.dumps({**state, "simulated": True}))
            if not (epoch == cfg.epochs or stop):  # as a real trial: only these resume
                (Path(tmp) / OPTIMIZER_FILE).write_bytes(b"simulated: no optimizer state\n")
            tune.report(report.metrics(), checkpoint=tune.Checkpoint.from_directory(tmp))
        if stop:
            break
    end_staging(staging)


def make_simulated_trainable(epoch_seconds: float) -> Callable[..., None]:
    """The function trainable of a simulated study: each epoch takes `epoch_seconds`."""

    def simulated(config: dict[str, Any]) -> None:
        run_simulated(config, epoch_seconds)

    return simulated
