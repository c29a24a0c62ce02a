"""Tune's trial generators, with new trials made where the study is now.

Tune pickles its search algorithm with the experiment, and with it the experiment's storage: a
study resumed from a copy (or after a move) would get the trials its searcher suggests from then
on in the original folder. These subclasses hand each new trial's storage through `here`
(`_relocation`), as Tune itself re-points the trials it restores.

Tune uploads its experiment state (the trials) and its searcher's state as separate files: a
driver killed between the uploads leaves them a save apart. `RelocatedSearch`, once restored,
makes its searchers agree with the trials Tune restored (the newest experiment state, which Tune
has just copied beside the searcher's): it counts the trials made as those, its
`ConcurrencyLimiter` counts as live the restored trials that will run, `SeedGroupSearch` hands out
again a seed Tune lost, and a trial the Optuna searcher made that Tune lost is failed there.
`RelocatedGrid` makes again the grid's points whose trials Tune lost.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchGenerator
from ray.tune.search.variant_generator import generate_variants

from mtl_tune.studies.driver._conditional_search import ConfigurationList
from mtl_tune.studies.driver._seed_group_search import TERMINATED, SeedGroupSearch
from mtl_tune.studies.store import TuneFiles, saved_trials_in

logger = logging.getLogger(__name__)


def _placed(trial: Any) -> Any:
    storage = getattr(trial, "storage", None)
    if storage is not None:
        TuneFiles(storage).place_here()  # each trial's own copy of the storage context
    return trial


class RelocatedSearch(SearchGenerator):
    """`SearchGenerator` (a Searcher's trials), each new trial placed where the study is."""

    def next_trial(self) -> Any:
        return _placed(super().next_trial())

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        _reconcile_from(self, dirpath)

    def reconcile(self, restored: Mapping[str, tuple[str, dict[str, Any]]]) -> None:
        """Agrees with the trials Tune restored: trial id -> (status, config)."""
        if self._counter != len(restored):
            logger.warning(
                "the searcher's saved state counts %d trials made and the experiment's %d (a "
                "driver killed between Tune's uploads of the two): the study goes on from the "
                "experiment's", self._counter, len(restored))
        self._counter = len(restored)
        lost: set[str] = set()
        searcher: Any = self.searcher
        while searcher is not None:
            if isinstance(searcher, ConcurrencyLimiter):
                lost = searcher.live_trials - set(restored)
                searcher.live_trials = {t for t, (status, _) in restored.items()
                                        if status != TERMINATED}
                searcher.num_unfinished_live_trials = len(searcher.live_trials)
            elif isinstance(searcher, SeedGroupSearch | ConfigurationList):
                searcher.reconcile(restored)  # and answers for the searcher it wraps
                return
            else:
                for trial in sorted(lost):  # made by this searcher, lost by Tune: a failure
                    searcher.on_trial_complete(trial, None, error=True)
                return
            searcher = getattr(searcher, "searcher", None)


class RelocatedGrid(BasicVariantGenerator):
    """`BasicVariantGenerator` (a grid's trials), each new trial placed where the study is."""

    def next_trial(self) -> Any:
        return _placed(super().next_trial())

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        _reconcile_from(self, dirpath)

    def reconcile(self, restored: Mapping[str, tuple[str, dict[str, Any]]]) -> None:
        """Agrees with the trials Tune restored (trial id -> (status, config)): the live trials
        are Tune's that will run, and the grid's points whose trials Tune lost are made again,
        first."""
        self._live_trials = {t for t, (status, _) in restored.items() if status != TERMINATED}
        held = Counter(_config_key(config) for _, config in restored.values())
        for iterator in self._iterators:
            if iterator.lazy_eval or iterator.variants is None or iterator.points_to_evaluate:
                continue  # not saved by Tune / nothing made yet / not a grid of ours
            one_pass = list(generate_variants(iterator.unresolved_spec,
                                              constant_grid_search=self._constant_grid_search))
            remaining = iterator.variants.iterable
            made = one_pass * (iterator.num_samples - iterator.num_samples_left)
            lost = []
            for variant in made[: len(made) - len(remaining)]:
                key = _config_key(variant[1]["config"])
                if held[key] > 0:
                    held[key] -= 1
                else:
                    lost.append(variant)
            if len(lost) != len(made) - len(remaining) - len(restored):
                # Tune's trials are not the grid's points made (a grid of several experiments,
                # or configurations that do not compare): Tune's are trusted, as before
                continue
            if lost:
                logger.warning("%d trial(s) of the grid made after Tune's last save of the "
                               "trials are made again", len(lost))
                remaining[0:0] = lost
                iterator.variants._has_next = True
                self._finished = False
                self.set_state(self.get_state())  # the trials' generator made anew from them


def _config_key(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def _reconcile_from(generator: RelocatedSearch | RelocatedGrid, dirpath: str) -> None:
    """Reconciles a restored generator with the trials of the newest experiment state in
    `dirpath` (Tune's driver folder, where it has just copied its saved files)."""
    saved = saved_trials_in(dirpath)
    if saved is not None:
        generator.reconcile({trial: (t.status, t.config) for trial, t in saved.items()})
