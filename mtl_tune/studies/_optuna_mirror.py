"""A persistent Optuna study that mirrors finished Ray trials, written only by the driver.

Why a mirror: handing OptunaSearch a persistent storage makes a resumed study fail after a
driver crash (the database holds a trial as finished while Tune's saved state still has it
running, and the restored searcher reports to it again: UpdateFinishedTrialError). Here the
searcher keeps Optuna's in-memory storage, which Tune checkpoints with its own state, and this
mirror only ever ADDS trials keyed by their Ray trial id: re-syncing after a resume skips the
ones already written, so the two can never disagree about a trial.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from ray import tune

from mtl_tune.studies._optuna_storage import open_storage
from mtl_tune.studies._spec import StudySpec

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

RAY_ID_ATTR = "ray_trial_id"
def spec_distributions(spec: StudySpec) -> dict[str, BaseDistribution]:
    """Optuna distributions of every key that varies between the spec's trials."""
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
    if spec.seeds > 1:
        base = int(spec.fixed.get("seed", 0))
        out["seed"] = CategoricalDistribution(list(range(base, base + spec.seeds)))
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
    ) -> None:
        self.storage_url, self.study_name = storage_url, study_name
        self.metric, self.mode, self.stage = metric, mode, stage
        self.distributions = dict(distributions)
        self._history: dict[str, dict[int, float]] = {}
        self._storage: optuna.storages.BaseStorage | None = None  # opened on first use

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment; a storage holds a connection
        return {**self.__dict__, "_storage": None}

    def study(self) -> optuna.Study:
        direction = (
            optuna.study.StudyDirection.MAXIMIZE
            if self.mode == "max"
            else optuna.study.StudyDirection.MINIMIZE
        )
        if self._storage is None:
            self._storage = open_storage(self.storage_url)
        return optuna.create_study(
            study_name=self.study_name,
            storage=self._storage,
            direction=direction,
            load_if_exists=True,
        )

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if self.metric in result:
            step = int(result.get("training_iteration", 0))
            self._history.setdefault(trial.trial_id, {})[step] = float(result[self.metric])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.add(self.study(), [(trial.trial_id, trial.config, trial.last_result)])

    def add(self, study: optuna.Study, finished: Iterable[tuple[str, dict, dict]]) -> int:
        """Adds the (trial id, config, last result) entries the study lacks; returns how many."""
        present = {t.user_attrs.get(RAY_ID_ATTR) for t in study.get_trials(deepcopy=False)}
        added = 0
        for trial_id, config, result in finished:
            if trial_id in present or not result or self.metric not in result:
                continue
            params = {k: config[k] for k in self.distributions if k in config}
            dists = {k: self.distributions[k] for k in params}
            frozen = optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=float(result[self.metric]),
                intermediate_values=self._history.get(trial_id, {}),
                user_attrs={
                    RAY_ID_ATTR: trial_id,
                    "stage": self.stage,
                    "epochs": int(result.get("training_iteration", 0)),
                },
            )
            study.add_trial(frozen)
            present.add(trial_id)
            added += 1
        return added
