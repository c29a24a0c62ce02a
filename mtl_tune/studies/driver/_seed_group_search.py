"""A searcher wrapper that runs each suggested configuration over several seeds, as a group.

Like Ray's `Repeater`, one suggestion of the wrapped searcher becomes one trial per seed, with
`seed` set and a `seed_group` id (the first seed's trial id). Unlike it, the searcher is told the
whole group: once every seed ended (finished, stopped with its group, or errored), the mean of
each reported number over the seeds that did not error, per epoch, at the epoch whose mean of
`metric` is best (the reports' rule), for one objective or several. A group's seeds are handed
out one after another, so a `ConcurrencyLimiter` of at least `seeds` trials never parks a group
half-made. Its state is saved with Tune's searcher state (the wrapped searcher's separately).

Tune uploads its experiment state and its searcher's state as separate files, so a driver killed
between the two leaves them a save apart, and a resume would wait forever on a seed the searcher
made but Tune forgot (or run a seed twice that Tune holds but the searcher never made).
`reconcile` makes the searcher agree with the trials Tune restored: a seed Tune does not hold is
handed out again, a restored seed the searcher did not know joins its group.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.search import Searcher

from mtl_tune.studies.results import EPOCH, best_epoch, epoch_means
from mtl_tune.studies.spec import SEED_GROUP_KEY

# Tune's status of a restored trial that will not run again (a study resumes errored trials)
TERMINATED = "TERMINATED"


class SeedGroupSearch(Searcher):
    def __init__(
        self, searcher: Searcher, seeds: Sequence[int], select_metric: str, select_mode: str
    ) -> None:
        self.searcher = searcher
        self.seeds = tuple(seeds)
        self._select = (select_metric, select_mode)
        self._configs: dict[str, dict[str, Any]] = {}  # group -> the suggested configuration
        # group -> its trials by seed (position i: seeds[i]; None: a seed to hand out again),
        # for the groups not yet told to the searcher, in the order they were made
        self._members: dict[str, list[str | None]] = {}
        self._group_of: dict[str, str] = {}
        self._rows: dict[str, dict[int, dict[str, float]]] = {}  # trial -> epoch -> numbers
        self._ended: dict[str, bool] = {}  # trial -> errored
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def _unfilled(self) -> tuple[str, int] | None:
        """The first group with a seed not handed out, and that seed's position."""
        for group, members in self._members.items():
            if None in members:
                return group, members.index(None)
            if len(members) < len(self.seeds):
                return group, len(members)
        return None

    def suggest(self, trial_id: str) -> dict | None:
        unfilled = self._unfilled()
        if unfilled is None:
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            self._configs[trial_id], self._members[trial_id] = copy.deepcopy(config), []
            unfilled = trial_id, 0
        group, slot = unfilled
        self._place(group, slot, trial_id)
        return {**copy.deepcopy(self._configs[group]), "seed": self.seeds[slot],
                SEED_GROUP_KEY: group}

    def _place(self, group: str, slot: int, trial_id: str) -> None:
        members = self._members[group]
        members.extend([None] * (slot + 1 - len(members)))
        members[slot] = trial_id
        self._group_of[trial_id] = group

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
            return  # a seed runs, or is still to be handed out (None is never ended)
        metric, mode = self._select
        ok = [list(self._rows.get(t, {}).values()) for t in members
              if t is not None and not self._ended[t]]
        means = epoch_means(ok, metric)
        if means:
            self.searcher.on_trial_complete(group, means[best_epoch(means, metric, mode)])
        else:
            self.searcher.on_trial_complete(group, None, error=True)
        for trial in filter(None, members):
            self._forget(trial)
        del self._members[group], self._configs[group]

    def _forget(self, trial: str) -> None:
        self._rows.pop(trial, None)
        self._ended.pop(trial, None)
        self._group_of.pop(trial, None)

    def reconcile(self, restored: Mapping[str, tuple[str, dict[str, Any]]]) -> None:
        """Agrees with the trials Tune restored (trial id -> (status, config)): a seed of a group
        not yet told that Tune does not hold is handed out again, and a restored seed this
        searcher did not make joins its group (a group it never made, or told the searcher
        with a seed Tune lacks, is taken up again from the restored seed's config)."""
        for members in self._members.values():
            for slot, trial in enumerate(members):
                if trial is not None and trial not in restored:
                    self._forget(trial)
                    members[slot] = None
        unknown: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}  # group -> its trials
        for trial, (status, config) in restored.items():
            group = config.get(SEED_GROUP_KEY)
            if group is None or trial in self._group_of or config.get("seed") not in self.seeds:
                continue
            unknown.setdefault(str(group), []).append((trial, status, config))
        for group, trials in unknown.items():
            if group not in self._members:
                if len(trials) == len(self.seeds) and all(s == TERMINATED for _, s, _ in trials):
                    continue  # a whole group that ended: nothing left to hand out or hear
                self._configs[group] = {k: v for k, v in trials[0][2].items()
                                        if k not in ("seed", SEED_GROUP_KEY)}
                self._members[group] = []
            for trial, status, config in trials:
                slot, members = self.seeds.index(config["seed"]), self._members[group]
                if slot < len(members) and members[slot] is not None:
                    continue  # the seed is another restored trial's: never two of one seed
                self._place(group, slot, trial)
                if status == TERMINATED:
                    self._ended[trial] = False

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
