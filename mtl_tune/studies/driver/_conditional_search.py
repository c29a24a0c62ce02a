"""How a study's searched keys reach Tune, conditions (`when`) included.

An Optuna search samples through `DefineByRun`, Optuna's define-by-run space: each key in turn,
and only while its conditions hold, so TPE learns a conditional key from the trials that used it
and the record holds only the keys a trial set. A grid with conditions hands Tune its
configurations one by one (`ConfigurationList`): Tune's own grid would multiply every key into
every configuration. Both are pickled with Tune's experiment state, so a resumed study goes on
with the same space.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.search import Searcher

from mtl_tune.studies.spec import Distribution, active, sampling_order


class DefineByRun:
    """Samples the searched keys on an Optuna trial, each after the keys its conditions name;
    returns the one-value choices that are set (Optuna suggests only what varies)."""

    def __init__(self, space: Mapping[str, Distribution]) -> None:
        self.space = dict(space)
        self.order = sampling_order(self.space)

    def __call__(self, trial: Any) -> dict[str, Any]:
        config: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for key in self.order:
            dist = self.space[key]
            if not active(dist, config):
                continue
            if dist.kind == "choice" and len(dist.values) == 1:
                config[key] = constants[key] = dist.values[0]
            elif dist.kind == "choice":
                config[key] = trial.suggest_categorical(key, list(dist.values))
            elif dist.kind == "int":
                config[key] = trial.suggest_int(key, int(dist.low), int(dist.high))
            else:
                config[key] = trial.suggest_float(key, dist.low, dist.high,
                                                  log=dist.kind == "loguniform")
        return constants


class ConfigurationList(Searcher):
    """Hands out the given configurations in order, each once, then ends the experiment."""

    def __init__(self, configurations: Sequence[Mapping[str, Any]], metric: str,
                 mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self.configurations = [dict(c) for c in configurations]
        self.handed_out = 0

    def suggest(self, trial_id: str) -> Any:  # a configuration, or Searcher.FINISHED
        if self.handed_out >= len(self.configurations):
            return Searcher.FINISHED
        self.handed_out += 1
        return dict(self.configurations[self.handed_out - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        pass  # a list learns nothing

    def reconcile(self, restored: Mapping[str, Any]) -> None:
        """Agrees with the trials Tune restored (one per configuration, made in order): the
        configurations of trials Tune lost (the newest: its saved state is a save behind this
        one) are handed out again."""
        self.handed_out = min(len(restored), len(self.configurations))

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__dict__, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(pickle.load(file))
