"""Finished trials keep weights only: their checkpoints lose the optimizer state.

Resuming needs the optimizer state (for MiniLM twice the size of the weights); predicting and
reporting do not. A finished or early-stopped trial is never resumed, so the driver drops the
optimizer state of its kept checkpoints as soon as it ends (`_callbacks.LeanCheckpoints`),
and once more for every finished trial at the end of an experiment
(`drop_finished_optimizer_state`), which also covers trials that ended while an earlier driver
was killed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def drop_trial_optimizer_state(trial_dir: str | Path | None) -> int:
    """Drops the optimizer state of every checkpoint of one trial; returns the bytes freed."""
    from mtl_tune.platform.checkpoint import drop_optimizer_state  # torch: only where it runs

    if not trial_dir or not Path(trial_dir).is_dir():
        return 0
    return sum(drop_optimizer_state(c) for c in Path(trial_dir).glob("checkpoint_*"))


def drop_finished_optimizer_state(results: Any) -> int:
    """The same for every trial of a Tune ResultGrid (or list of Results) that ended well."""
    freed = sum(drop_trial_optimizer_state(r.path) for r in results if r.error is None)
    if freed:
        logger.info("freed %.0f MB of optimizer state of finished trials", freed / 2**20)
    return freed
