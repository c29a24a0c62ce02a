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
own times; a trial that ended before its planned epochs (ASHA, patience) is PRUNED. A seed
group (one configuration over several seeds, `seeds` > 1) is one record, added once all its
seeds ended: the seeds' mean per epoch, as the searcher was told, with each seed's scores.
"""

from __future__ import annotations

import logging
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

from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.studies.driver._population_record import lineage_schedule, trial_folder
from mtl_tune.studies.results import best_epoch, by_epoch, epoch_means, read_result_rows
from mtl_tune.studies.spec import (
    ITERATION,
    RAY_ID_ATTR,
    REPORT_KEYS,
    SEED_GROUP_KEY,
    Objective,
    StudySpec,
    TrialReport,
)
from mtl_tune.studies.store import StudyStore, here_url, open_storage, staged_path, uri_of

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

SCORE_ATTRS = METRIC_KEYS  # the user attributes of the scores at the best epoch
# an ended trial: (Ray trial id, config, per-epoch results; None when it errored)
Ended = tuple[str, Mapping[str, Any], Sequence[Mapping[str, Any]] | None]
_KEPT = {*SCORE_ATTRS, *REPORT_KEYS, ITERATION, "timestamp", "time_total_s",
         "checkpoint_dir_name"}


def with_checkpoints(rows: Iterable[Mapping[str, Any]], trial_dir: Path) -> list[dict[str, Any]]:
    """The rows, each that names its epoch's checkpoint with that checkpoint's location under
    "checkpoint" (on an object store, its URI)."""
    out = []
    for row in rows:
        name = row.get("checkpoint_dir_name")
        out.append({**row, "checkpoint": uri_of(trial_dir / name)} if name else dict(row))
    return out


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
        seeds: int = 1,
        folder: Path | None = None,
        schedule_keys: Sequence[str] = (),
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
        self._storage: optuna.storages.BaseStorage | None = None  # opened on first use
        # the Ray ids the study holds, read once: only this driver adds to it (the study's lock)
        self._present: set[Any] | None = None

    @classmethod
    def for_spec(
        cls, spec: StudySpec, storage_url: str, stage: str, folder: Path | None = None
    ) -> OptunaMirror:
        return cls(
            storage_url, spec.name, spec.metric, spec.mode, spec_distributions(spec), stage,
            spec.objectives, spec.seeds if spec.seed_groups else 1, folder,
            tuple(spec.pbt.mutations) if spec.pbt is not None else (),
        )

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment; a storage holds a connection
        return {**self.__dict__, "_storage": None, "_present": None, "_schedules": {},
                "_ended_rows": {}}

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
                self.add(self.study(), [(trial.trial_id, trial.config, rows)])
            return
        members = self._groups.setdefault(str(group), {})
        members[trial.trial_id] = (trial.config, rows)
        if len(members) >= self.seeds:  # every seed ended: one record for the group
            ended = [(t, c, r) for t, (c, r) in members.items()]
            self.add_groups(self.study(), {str(group): ended})
            del self._groups[str(group)]

    def frozen_trial(
        self, trial_id: str, config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
    ) -> optuna.trial.FrozenTrial | None:
        """The Optuna record of one ended Ray trial from its per-epoch results; None when no
        epoch reported the metric."""
        epochs = by_epoch(rows, self.metric)
        if not epochs:
            return None
        last = epochs[max(epochs)]
        end = float(last.get("timestamp", time.time()))
        attrs: dict[str, Any] = {RAY_ID_ATTR: trial_id, **self._schedule_of([trial_id])}
        if "seed" in config:
            attrs["seed"] = config["seed"]
        return self._frozen(config, epochs, attrs, end - float(last.get("time_total_s", 0.0)), end)

    def frozen_group(
        self, group: str, members: Sequence[Ended]
    ) -> optuna.trial.FrozenTrial | None:
        """The Optuna record of a seed group: per epoch, the mean of the seeds that did not
        error; the values at the epoch whose mean is best; each seed's scores at that epoch
        (`seed_scores`) and its Ray trial id as user attributes. A seed that ended before it
        reported an epoch is left out like one that errored. None when no seed reported."""
        ok = [(t, c, r) for t, c, r in members if r is not None and by_epoch(r, self.metric)]
        means = epoch_means([r for _, _, r in ok], self.metric)
        if not means:
            return None
        best = best_epoch(means, self.metric, self.mode)
        seed_scores, checkpoints, starts, ends = {}, {}, [], []
        for _, config, rows in ok:
            epochs = by_epoch(rows, self.metric)
            seed_scores[str(config.get("seed"))] = {
                k: float(epochs[best][k]) for k in SCORE_ATTRS if k in epochs[best]
            }
            if epochs[best].get("checkpoint"):
                checkpoints[str(config.get("seed"))] = str(epochs[best]["checkpoint"])
            last = epochs[max(epochs)]
            ends.append(float(last.get("timestamp", time.time())))
            starts.append(ends[-1] - float(last.get("time_total_s", 0.0)))
        attrs: dict[str, Any] = {
            RAY_ID_ATTR: group,
            "ray_trial_ids": sorted(t for t, _, _ in members if t),  # "": errored unreported
            "seeds": sorted(c.get("seed") for _, c, _ in members),
            "seed_scores": seed_scores,
            "errored_seeds": sum(r is None for _, _, r in members),
            **self._schedule_of([t for t, _, _ in ok]),
        }
        if len(members) - len(ok) > attrs["errored_seeds"]:
            attrs["unreported_seeds"] = len(members) - len(ok) - attrs["errored_seeds"]
        if checkpoints:  # each seed's checkpoint at the group's best epoch
            attrs["seed_checkpoints"] = checkpoints
        return self._frozen(ok[0][1], means, attrs, min(starts), max(ends))

    def _schedule_of(self, trial_ids: Sequence[str]) -> dict[str, Any]:
        """{"schedule": ...} of a population-based trial (a group: its first seed's, as all
        of its seeds share it), else none. Optuna has no type for a schedule: the values each
        epoch of its lineage trained with, a change a row; its last values are parameters."""
        schedules = getattr(self, "_schedules", {})
        found = [schedules.pop(t) for t in trial_ids if t in schedules]
        return {"schedule": found[0]} if found else {}

    def _frozen(
        self, config: Mapping[str, Any], epochs: Mapping[int, Mapping[str, Any]],
        attrs: dict[str, Any], start: float, end: float,
    ) -> optuna.trial.FrozenTrial:
        best_at = best_epoch(epochs, self.metric, self.mode)
        best, last_epoch = epochs[best_at], max(epochs)
        pruned = last_epoch < TrialReport.from_result(epochs[last_epoch]).epochs_planned
        params = {k: config[k] for k in self.distributions if k in config}
        attrs = {
            **attrs, "stage": self.stage, "epochs": last_epoch, "best_epoch": best_at,
            **{k: float(best[k]) for k in SCORE_ATTRS if k in best},
        }
        if best.get("checkpoint") and "seed_checkpoints" not in attrs:
            attrs["checkpoint"] = str(best["checkpoint"])  # of the best epoch
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
            intermediate_values={e: float(epochs[e][self.metric]) for e in sorted(epochs)},
        )

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
