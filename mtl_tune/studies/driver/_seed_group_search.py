"""A searcher wrapper that runs each suggested configuration over several seeds, as a group.

Like Ray's `Repeater`, one suggestion of the wrapped searcher becomes one trial per seed, with
`seed` set and a `seed_group` id (the first seed's trial id). Unlike it, the searcher is told the
whole group: once every seed ended (finished, stopped with its group, or errored), the mean of
each reported number over the seeds that did not error, per epoch, at the epoch whose mean of
`metric` is best (the reports' rule), for one objective or several. A group's seeds are handed
out one after another, so a `ConcurrencyLimiter` of at least `seeds` trials never parks a group
half-made. Its state is saved with Tune's searcher state (the wrapped searcher's separately).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from ray.tune.search import Searcher

from mtl_tune.studies.results import EPOCH, best_epoch, epoch_means
from mtl_tune.studies.spec import SEED_GROUP_KEY


class SeedGroupSearch(Searcher):
    def __init__(
        self, searcher: Searcher, seeds: Sequence[int], select_metric: str, select_mode: str
    ) -> None:
        self.searcher = searcher
        self.seeds = tuple(seeds)
        self._select = (select_metric, select_mode)
        self._current: str | None = None  # the group being handed out
        self._configs: dict[str, dict[str, Any]] = {}  # group -> the suggested configuration
        self._members: dict[str, list[str]] = {}  # group -> its trials, in seed order
        self._group_of: dict[str, str] = {}
        self._rows: dict[str, dict[int, dict[str, float]]] = {}  # trial -> epoch -> numbers
        self._ended: dict[str, bool] = {}  # trial -> errored
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | None:
        group = self._current or ""
        if group not in self._members or len(self._members[group]) == len(self.seeds):
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            group = self._current = trial_id
            self._configs[group], self._members[group] = copy.deepcopy(config), []
        seed = self.seeds[len(self._members[group])]
        self._members[group].append(trial_id)
        self._group_of[trial_id] = group
        return {**copy.deepcopy(self._configs[group]), "seed": seed, SEED_GROUP_KEY: group}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._group_of and EPOCH in result:
            numbers = {k: float(v) for k, v in result.items()
                       if isinstance(v, int | float) and not isinstance(v, bool)}
            self._rows.setdefault(trial_id, {})[int(result[EPOCH])] = numbers

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        group = self._group_of.get(trial_id)
        if group is None:
            return
        if result and not error:
            self.on_trial_result(trial_id, result)
        self._ended[trial_id] = error
        members = self._members[group]
        if len(members) < len(self.seeds) or not all(t in self._ended for t in members):
            return
        metric, mode = self._select
        ok = [list(self._rows.get(t, {}).values()) for t in members if not self._ended[t]]
        means = epoch_means(ok, metric)
        if means:
            self.searcher.on_trial_complete(group, means[best_epoch(means, metric, mode)])
        else:
            self.searcher.on_trial_complete(group, None, error=True)
        for trial in members:
            self._rows.pop(trial, None)
            self._ended.pop(trial, None)
            self._group_of.pop(trial, None)
        del self._members[group], self._configs[group]

    def get_state(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["searcher"]
        return copy.deepcopy(state)

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)
