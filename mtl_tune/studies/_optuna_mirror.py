"""A persistent Optuna study that mirrors finished Ray trials, written only by the driver.

Why a mirror: handing OptunaSearch a persistent storage makes a resumed study fail after a
driver crash (the database holds a trial as finished while Tune's saved state still has it
running, and the restored searcher reports to it again: UpdateFinishedTrialError). Here the
searcher keeps Optuna's in-memory storage, which Tune checkpoints with its own state, and this
mirror only ever ADDS trials keyed by their Ray trial id: re-syncing after a resume skips the
ones already written, so the two can never disagree about a trial.

Each trial is written as the reports see it: its value is its best epoch's metric (the reports'
rule, `best_epochs`), with the per-task scores and that epoch as user attributes; the seed is a
user attribute, never a parameter (it is noise, not a choice); start and end are the trial's
own times; a trial that ended before its planned epochs (ASHA, patience) is PRUNED.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import StudyDirection
from optuna.trial import TrialState
from ray import tune

from mtl_tune.studies._optuna_storage import open_storage
from mtl_tune.studies._results import read_result_rows
from mtl_tune.studies._spec import Objective, StudySpec

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

RAY_ID_ATTR = "ray_trial_id"
SCORE_ATTRS = ("sst_acc", "para_acc", "sts_corr", "overall", "mean_score")  # at the best epoch
_KEPT = {*SCORE_ATTRS, "training_iteration", "epochs_planned", "timestamp", "time_total_s"}


def spec_distributions(spec: StudySpec) -> dict[str, BaseDistribution]:
    """Optuna distributions of every key that varies between the spec's trials by choice
    (the seed, a repeat, is not one: it goes into user attributes)."""
    out: dict[str, BaseDistribution] = {}
    if len(spec.trainables) > 1:
        out["trainable"] = CategoricalDistribution(list(spec.trainables))
    for key, dist in spec.space.items():
        if dist.kind == "loguniform":
            out[key] = FloatDistribution(dist.low, dist.high, log=True)
        elif dist.kind == "uniform":
            out[key] = FloatDistribution(dist.low, dist.high)
        elif dist.kind == "int":
            out[key] = IntDistribution(int(dist.low), int(dist.high))
        elif len(dist.values) > 1:
            out[key] = CategoricalDistribution(list(dist.values))
    for stage in spec.stages:
        out[stage.key] = CategoricalDistribution(list(stage.values))
    return out


class OptunaMirror(tune.Callback):
    """Adds each finished Ray trial to the persistent Optuna study (once, by Ray trial id)."""

    def __init__(
        self,
        storage_url: str,
        study_name: str,
        metric: str,
        mode: str,
        distributions: Mapping[str, BaseDistribution],
        stage: str,
        objectives: Sequence[Objective] = (),
    ) -> None:
        self.storage_url, self.study_name = storage_url, study_name
        self.metric, self.mode, self.stage = metric, mode, stage
        self.distributions = dict(distributions)
        # one objective: the study's metric; several: each, taken at the metric's best epoch
        self.objectives = tuple(objectives) or (Objective(metric, mode),)
        self._seen: dict[str, list[dict[str, Any]]] = {}  # trial id -> results seen by the driver
        self._storage: optuna.storages.BaseStorage | None = None  # opened on first use

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment; a storage holds a connection
        return {**self.__dict__, "_storage": None}

    def study(self) -> optuna.Study:
        directions = [
            StudyDirection.MAXIMIZE if o.mode == "max" else StudyDirection.MINIMIZE
            for o in self.objectives
        ]
        if self._storage is None:
            self._storage = open_storage(self.storage_url)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self._storage,
            directions=directions,
            load_if_exists=True,
        )
        names = [o.name for o in self.objectives]
        if study.metric_names != names:
            with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(names)
        return study

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self._seen.setdefault(trial.trial_id, []).append(
            {k: v for k, v in result.items() if k in _KEPT or k == self.metric}
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # result.json may not hold the newest lines yet (Tune's logger buffers), and the results
        # seen here miss the epochs from before a resume: both, the ones seen here last
        rows = [*read_result_rows(Path(trial.path)), *self._seen.pop(trial.trial_id, [])]
        self.add(self.study(), [(trial.trial_id, trial.config, rows or [trial.last_result])])

    def frozen_trial(
        self, trial_id: str, config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
    ) -> optuna.trial.FrozenTrial | None:
        """The Optuna record of one ended Ray trial from its per-epoch results; None when no
        epoch reported the metric."""
        by_epoch = {
            int(r["training_iteration"]): r
            for r in rows
            if self.metric in r and "training_iteration" in r and math.isfinite(r[self.metric])
        }  # a restored trial reports its later epochs again: the last report counts
        if not by_epoch:
            return None
        epochs = sorted(by_epoch)
        # the earliest epoch wins a tie, as in `best_epochs`
        best_epoch = (max if self.mode == "max" else min)(
            epochs, key=lambda e: (by_epoch[e][self.metric], -e if self.mode == "max" else e)
        )
        best, last = by_epoch[best_epoch], by_epoch[epochs[-1]]
        planned = last.get("epochs_planned")
        pruned = isinstance(planned, int | float) and epochs[-1] < planned
        end = float(last.get("timestamp", time.time()))
        start = end - float(last.get("time_total_s", 0.0))
        params = {k: config[k] for k in self.distributions if k in config}
        attrs: dict[str, Any] = {
            RAY_ID_ATTR: trial_id,
            "stage": self.stage,
            "epochs": epochs[-1],
            "best_epoch": best_epoch,
            **{k: float(best[k]) for k in SCORE_ATTRS if k in best},
        }
        if "seed" in config:
            attrs["seed"] = config["seed"]
        return optuna.trial.FrozenTrial(
            number=-1,  # numbered by the storage
            trial_id=-1,
            state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
            value=None,
            values=[float(best[o.name]) for o in self.objectives],
            datetime_start=datetime.fromtimestamp(start),
            datetime_complete=datetime.fromtimestamp(end),
            params=params,
            distributions={k: self.distributions[k] for k in params},
            user_attrs=attrs,
            system_attrs={},
            intermediate_values={e: float(by_epoch[e][self.metric]) for e in epochs},
        )

    def add(
        self,
        study: optuna.Study,
        ended: Iterable[tuple[str, Mapping[str, Any], Sequence[Mapping[str, Any]]]],
    ) -> int:
        """Adds the (trial id, config, per-epoch results) the study lacks; returns how many."""
        present = {t.user_attrs.get(RAY_ID_ATTR) for t in study.get_trials(deepcopy=False)}
        added = 0
        for trial_id, config, rows in ended:
            if trial_id in present:
                continue
            frozen = self.frozen_trial(trial_id, config, rows)
            if frozen is None:
                continue
            study.add_trial(frozen)
            present.add(trial_id)
            added += 1
        return added
