"""A persistent Optuna study that mirrors finished Ray trials, written only by the driver.

Why a mirror: handing OptunaSearch a persistent storage makes a resumed study fail after a
driver crash (the database holds a trial as finished while Tune's saved state still has it
running, and the restored searcher reports to it again: UpdateFinishedTrialError). Here the
searcher keeps Optuna's in-memory storage, which Tune checkpoints with its own state, and this
mirror only ever ADDS trials keyed by their Ray trial id: re-syncing after a resume skips the
ones already written, so the two can never disagree about a trial.

A trial (a seed group: all its seeds) is added once Tune's saved state holds it ended, as the
checkpoint retention last copied that state: a trial that Tune created and finished between two
of its saves is forgotten by a resume after a kill (its searcher suggests it anew, under another
id), and had it been added on finishing, Optuna would hold a trial the study does not. At the
experiment's end (Tune has saved its state, and waited) every ended trial is added. How a
record is built: `_optuna_trials`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from ray import tune

from mtl_tune.studies.driver._optuna_trials import (
    SCORE_ATTRS,
    Ended,
    FrozenRecords,
    spec_distributions,
    with_checkpoints,
)
from mtl_tune.studies.driver._population_record import lineage_schedule, trial_folder
from mtl_tune.studies.results import read_result_rows
from mtl_tune.studies.spec import (
    ITERATION,
    RAY_ID_ATTR,
    REPORT_KEYS,
    SEED_GROUP_KEY,
    Objective,
    StudySpec,
)
from mtl_tune.studies.store import StudyStore, here_url, open_storage, staged_path

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

_KEPT = {*SCORE_ATTRS, *REPORT_KEYS, ITERATION, "timestamp", "time_total_s",
         "checkpoint_dir_name"}


ENDED = ("TERMINATED", "ERROR")


class SavedStateView(Protocol):
    """What the mirror asks of Tune's saved state: `saved`, trial id -> an object with the
    trial's `status` as that state holds it (None: no copy yet). The checkpoint retention
    callback is one (the copy it prunes against)."""

    saved: Mapping[str, Any] | None


class OptunaMirror(FrozenRecords, tune.Callback):
    """Adds each finished Ray trial to the persistent Optuna study (once, by Ray trial id), as
    soon as `saved_view` (Tune's saved state) holds it ended; at once when there is no view."""

    def __init__(
        self,
        storage_url: str,
        study_name: str,
        metric: str,
        mode: str,
        distributions: Mapping[str, BaseDistribution],
        stage: str,
        objectives: Sequence[Objective] = (),
        seeds: int = 1,
        folder: Path | None = None,
        schedule_keys: Sequence[str] = (),
        saved_view: SavedStateView | None = None,
    ) -> None:
        self.storage_url, self.study_name = storage_url, study_name
        # the study folder (its URI, as TrialEvents keeps it): where the trials' checkpoints are
        self.study_uri = None if folder is None else StudyStore.at(folder).uri
        self.metric, self.mode, self.stage = metric, mode, stage
        self.distributions = dict(distributions)
        # one objective: the study's metric; several: each, taken at the metric's best epoch
        self.objectives = tuple(objectives) or (Objective(metric, mode),)
        self.seeds = seeds  # > 1: trials come in seed groups, recorded once per group
        # population-based training: the keys a trial's schedule changes, kept per epoch
        self.schedule_keys = tuple(schedule_keys)
        self._schedules: dict[str, list[dict[str, Any]]] = {}  # trial -> its lineage's
        self._ended_rows: dict[str, list[dict[str, Any]]] = {}  # (its file may lag behind)
        self._seen: dict[str, list[dict[str, Any]]] = {}  # trial id -> results seen by the driver
        self._groups: dict[str, dict[str, tuple[Mapping[str, Any], Any]]] = {}  # ended seeds
        self.saved_view = saved_view
        # record key (trial or group) -> (the trial ids that must have ended in Tune's saved
        # state, how to record it)
        self._waiting: dict[str, tuple[tuple[str, ...], Callable[[optuna.Study], int]]] = {}
        self._asked: Any = None  # the copy of Tune's saved state asked last
        self._unasked: set[str] = set()  # what waits since
        self._storage: optuna.storages.BaseStorage | None = None  # opened on first use
        # the Ray ids the study holds, read once: only this driver adds to it (the study's lock)
        self._present: set[Any] | None = None

    @classmethod
    def for_spec(
        cls, spec: StudySpec, storage_url: str, stage: str, folder: Path | None = None,
        saved_view: SavedStateView | None = None,
    ) -> OptunaMirror:
        return cls(
            storage_url, spec.name, spec.metric, spec.mode, spec_distributions(spec), stage,
            spec.objectives, spec.seeds if spec.seed_groups else 1, folder,
            tuple(spec.pbt.mutations) if spec.pbt is not None else (), saved_view,
        )

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment; a storage holds a connection, and
        # what waits for Tune's save is recorded by the end-of-run sync after a resume
        return {**self.__dict__, "_storage": None, "_present": None, "_schedules": {},
                "_ended_rows": {}, "_waiting": {}, "_asked": None, "_unasked": set()}

    def study(self) -> optuna.Study:
        directions = [
            StudyDirection.MAXIMIZE if o.mode == "max" else StudyDirection.MINIMIZE
            for o in self.objectives
        ]
        if self._storage is None:
            self._storage = open_storage(here_url(self.storage_url))
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
        kept = {k: v for k, v in result.items() if k in _KEPT or k == self.metric}
        if getattr(self, "schedule_keys", ()):  # (None pickled by an older version)
            kept["config"] = {k: v for k, v in result.get("config", {}).items()
                              if k in self.schedule_keys}
        self._seen.setdefault(trial.trial_id, []).append(kept)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # result.json may not hold the newest lines yet (Tune's logger buffers), and the results
        # seen here miss the epochs from before a resume: both, the ones seen here last. On an
        # object store, the driver's own copy of the trial folder is the one to read
        trial_dir = trial_folder(trial)
        rows = [*read_result_rows(trial_dir), *self._seen.pop(trial.trial_id, [])]
        rows = rows or [trial.last_result]
        study_uri = getattr(self, "study_uri", None)  # None: pickled by an older version
        if study_uri is not None:
            folder = StudyStore.open(study_uri).folder
            rows = with_checkpoints(rows, staged_path(folder, trial.path))
            if getattr(self, "schedule_keys", ()):  # (the rows of a population: a few)
                self._schedules[trial.trial_id] = lineage_schedule(
                    folder, trial, rows, trials, {**self._ended_rows, **self._seen},
                    self.metric, self.schedule_keys)
                self._ended_rows[trial.trial_id] = rows
        self._ended(trial, rows)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._seen.pop(trial.trial_id, None)
        if SEED_GROUP_KEY in trial.config:  # its group is recorded without it
            self._ended(trial, None)

    def _ended(self, trial: Any, rows: list[dict[str, Any]] | None) -> None:
        group = trial.config.get(SEED_GROUP_KEY)
        if group is None:
            if rows is not None:
                ended = [(trial.trial_id, trial.config, rows)]
                self._await(trial.trial_id, (trial.trial_id,), lambda s: self.add(s, ended))
            return
        members = self._groups.setdefault(str(group), {})
        members[trial.trial_id] = (trial.config, rows)
        if len(members) >= self.seeds:  # every seed ended: one record for the group
            seeds = [(t, c, r) for t, (c, r) in members.items()]
            del self._groups[str(group)]
            self._await(str(group), tuple(t for t, _, _ in seeds if t),
                        lambda s: self.add_groups(s, {str(group): seeds}))

    def _await(self, key: str, trial_ids: tuple[str, ...],
               record: Callable[[optuna.Study], int]) -> None:
        if not hasattr(self, "_waiting"):  # pickled by a version that recorded at once
            self._waiting, self.saved_view = {}, None
        self._waiting[key] = (trial_ids, record)
        self._unasked = {*getattr(self, "_unasked", ()), key}
        self.record_saved(final=self.saved_view is None)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.record_saved()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.record_saved(final=True)  # Tune saved its state, and waited, just before

    def record_saved(self, final: bool = False) -> int:
        """Records what waits and Tune's saved state holds ended (`final`: all of it); returns
        how many records were added."""
        waiting = getattr(self, "_waiting", {})
        view = getattr(self, "saved_view", None)
        saved = None if final or view is None else view.saved
        if not waiting or (saved is None and not final):
            return 0
        # against the copy asked last time, only what waits since: the others are not in it
        unasked = getattr(self, "_unasked", None)
        unasked = set(waiting) if unasked is None else unasked  # (pickled by an older version)
        asked = saved is not None and saved is getattr(self, "_asked", None)
        ready = [key for key, (ids, _) in waiting.items()
                 if final or ((not asked or key in unasked)
                              and all(_ended_in(saved, t) for t in ids))]
        self._asked, self._unasked = saved, set()
        added = 0
        if ready:
            study = self.study()
            for key in ready:
                added += waiting.pop(key)[1](study)
        return added

    def add(
        self,
        study: optuna.Study,
        ended: Iterable[tuple[str, Mapping[str, Any], Sequence[Mapping[str, Any]]]],
    ) -> int:
        """Adds the (trial id, config, per-epoch results) the study lacks; returns how many."""
        present = self._held(study)
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

    def add_groups(self, study: optuna.Study, groups: Mapping[str, Sequence[Ended]]) -> int:
        """Adds the seed groups (group id -> its ended seeds, rows None for one that errored)
        the study lacks, once each; returns how many."""
        present = self._held(study)
        added = 0
        for group, members in groups.items():
            frozen = None if group in present else self.frozen_group(group, members)
            if frozen is not None:
                study.add_trial(frozen)
                present.add(group)
                added += 1
        return added

    def _held(self, study: optuna.Study) -> set[Any]:
        """The Ray ids (trials or seed groups) the study holds: read from it once, then kept
        as trials are added (reading every trial per added one grew with the study)."""
        if getattr(self, "_present", None) is None:  # None too when pickled by an older version
            self._present = {t.user_attrs.get(RAY_ID_ATTR)
                             for t in study.get_trials(deepcopy=False)}
        assert self._present is not None
        return self._present


def _ended_in(saved: Any, trial_id: str) -> bool:
    try:
        return saved[trial_id].status in ENDED
    except KeyError:  # created after the state was saved
        return False
