"""Finished trials keep weights only: their checkpoints lose the optimizer state.

Resuming needs the optimizer state (for MiniLM twice the size of the weights); predicting and
reporting do not. A finished or early-stopped trial is never resumed, so the driver drops the
optimizer state of its kept checkpoints as soon as it ends (`LeanCheckpoints`), and once more
for every finished trial at the end of an experiment (`drop_finished_optimizer_state`), which
also covers trials that ended while an earlier driver was killed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray import tune

from mtl_tune.platform.checkpoint import drop_optimizer_state

logger = logging.getLogger(__name__)


def drop_trial_optimizer_state(trial_dir: str | Path | None) -> int:
    """Drops the optimizer state of every checkpoint of one trial; returns the bytes freed."""
    if not trial_dir or not Path(trial_dir).is_dir():
        return 0
    return sum(drop_optimizer_state(c) for c in Path(trial_dir).glob("checkpoint_*"))


def drop_finished_optimizer_state(results: Any) -> int:
    """The same for every trial of a Tune ResultGrid (or list of Results) that ended well."""
    freed = sum(drop_trial_optimizer_state(r.path) for r in results if r.error is None)
    if freed:
        logger.info("freed %.0f MB of optimizer state of finished trials", freed / 2**20)
    return freed


class LeanCheckpoints(tune.Callback):
    """Drops a trial's optimizer state when it completes or a scheduler stops it."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        freed = drop_trial_optimizer_state(trial.path)
        if freed:
            logger.debug("%s: freed %.0f MB of optimizer state", trial.trial_id, freed / 2**20)
