"""The function trainable every registered model iteration runs: build, train, report per epoch."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from ray import tune

from mtl_tune.platform.bundle import DataBundle, cached_bundle
from mtl_tune.platform.checkpoint import has_optimizer_state, restore_trainer, save_checkpoint
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.platform.presets import resolve_config
from mtl_tune.platform.train import Trainer
from mtl_tune.studies import (
    SEED_GROUP_KEY,
    EpochReport,
    TrialReport,
    end_staging,
    study_keys,
)
from mtl_tune.trainables import _context

logger = logging.getLogger(__name__)

_placement = _context.placement  # module globals: a test stands in for them
_staging = _context.staging


def _set_threads(config: TrainConfig, assigned_cpus: float) -> None:
    # concurrent trials on one node must not each grab every core
    threads = config.threads or int(assigned_cpus)
    if threads > 0:
        torch.set_num_threads(threads)


def run_trial(name: str | None, config: Mapping[str, Any], data: DataBundle | None) -> None:
    training, study = study_keys(config)
    cfg = resolve_config(name, training)
    # a seed of a seed group never stops on its own patience: the study's scheduler stops the
    # whole group on the mean of its seeds (it reads `group_patience`)
    grouped = SEED_GROUP_KEY in study
    group_patience = cfg.patience if grouped else 0
    cfg = dataclasses.replace(cfg, patience=0) if grouped else cfg
    placement = _placement()
    _set_threads(cfg, placement.cpus)
    splits = (data or cached_bundle(cfg)).for_config(cfg)
    checkpoint = tune.get_checkpoint()
    trainer = None
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            if not has_optimizer_state(Path(folder)):
                # only a trial that ended (finished, or stopped by the scheduler) has weights-only
                # checkpoints; Tune's saved state can still list it as running when the driver
                # was killed right after: it stays ended
                logger.info("checkpoint %s is of a trial that had ended: not training", folder)
                return
            trainer = Trainer(cfg, splits)
            restore_trainer(trainer, Path(folder))
        logger.info("restored from checkpoint after epoch %d", trainer.epochs_done)
    trainer = trainer or Trainer(cfg, splits)
    placement = dataclasses.replace(placement, device=str(trainer.device))
    staging = _staging()
    for epoch in range(trainer.epochs_done + 1, cfg.epochs + 1):
        result = trainer.run_epoch(epoch)
        progress = TrialReport(
            patience=cfg.patience, stale_epochs=trainer.stale_epochs,
            group_patience=group_patience, min_delta=cfg.min_delta, epochs_planned=cfg.epochs,
            best_overall=trainer.best_overall,
            train_loss_curve=tuple({"step": step, **losses} for step, losses in result.loss_curve))
        report = EpochReport(
            scores={k: v for k, v in result.metrics.items() if k in METRIC_KEYS},
            training={k: v for k, v in result.metrics.items() if k not in METRIC_KEYS},
            placement=placement, progress=progress)
        metrics = report.metrics()
        final = epoch == cfg.epochs or trainer.should_stop
        with tempfile.TemporaryDirectory(dir=staging, prefix=f"epoch{epoch}-") as tmp:
            # the last epoch's checkpoint never resumes: weights only (the driver's
            # CheckpointRetention drops the optimizer state of the others once the trial ends)
            save_checkpoint(trainer, Path(tmp), result.metrics, result.evaluation.predictions,
                            optimizer=not final)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
        if trainer.should_stop:  # the study's PatienceStopper ends the trial on this report
            break
    end_staging(staging)


def make_trainable(name: str | None) -> Callable[..., None]:
    """The function trainable of preset `name` (None: the preset named by config["trainable"])."""

    def trainable(config: dict[str, Any], data: DataBundle | None = None) -> None:
        run_trial(name, config, data)

    trainable.__name__ = (name or "multitask").replace("-", "_")
    trainable.__qualname__ = trainable.__name__
    return trainable
