"""The Optuna searcher of a study, told each trial's best epoch rather than its last one.

Ray's `OptunaSearch` tells Optuna the last result a trial reported. A study ranks a trial by its
best epoch (by the study's scalar `metric`, the earliest on a tie: `best_epochs`), and a trial
that ASHA stops or that overfits ends below its best; so this searcher keeps each trial's best
result so far and tells Optuna that one, for one objective or several. Its state is saved and
restored with Tune's experiment state (OptunaSearch pickles the searcher's attributes).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from mtl_tune.studies.spec import better

logger = logging.getLogger(__name__)


class BestEpochSearch(OptunaSearch):
    def __init__(self, select_metric: str, select_mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._select = (select_metric, select_mode)
        self._best: dict[str, dict[str, Any]] = {}  # trial id -> its best result so far

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        metric, mode = self._select
        value = result.get(metric)
        if isinstance(value, int | float) and math.isfinite(value):
            best = self._best.get(trial_id)
            if best is None or better(float(value), float(best[metric]), mode):
                self._best[trial_id] = dict(result)
        super().on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        best = self._best.pop(trial_id, None)
        if trial_id not in self._ot_trials:
            # suggested after the state this searcher was restored from (a driver killed
            # between Tune's uploads of its state files): Optuna has no trial to complete, and
            # Ray's searcher would stop the study with a KeyError. The study's Optuna record
            # (the mirror) still gets it.
            logger.warning("the searcher has no trial %s to complete (suggested after the state "
                           "it was restored from): TPE learns nothing from it", trial_id)
            return
        super().on_trial_complete(trial_id, best if best and not error else result, error)
