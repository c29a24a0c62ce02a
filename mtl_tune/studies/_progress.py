"""A concise live view of a study: one line per epoch result and per finished trial."""

from __future__ import annotations

import logging
from typing import Any

from ray import tune

logger = logging.getLogger("mtl_tune.progress")


class ConciseProgress(tune.Callback):
    """Logs `trial  epoch  metric (best so far)` lines to the `mtl_tune.progress` logger."""

    def __init__(self, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode
        self.best: tuple[float, str] | None = None
        self.done = 0

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[0] if self.mode == "max" else value < self.best[0]

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        value = result.get(self.metric)
        if value is None:
            return
        if self._better(value):
            self.best = (value, trial.trial_id)
        assert self.best is not None
        logger.info(
            "%s %-18s epoch %d  %s %.4f  (best %.4f, %s)  sst %.3f pd %.3f sts %.3f",
            trial.trial_id,
            trial.config.get("trainable", ""),
            result.get("training_iteration", 0),
            self.metric,
            value,
            self.best[0],
            self.best[1],
            result.get("sst_acc", float("nan")),
            result.get("para_acc", float("nan")),
            result.get("sts_corr", float("nan")),
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        logger.info("%s finished (%d/%d trials done)", trial.trial_id, self.done, len(trials))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        logger.info("%s failed: see %s", trial.trial_id, trial.local_path)
