"""The Optuna record of ended Ray trials, built from their per-epoch results: one trial, or one
seed group (`FrozenRecords`, the rules the Optuna mirror and the end-of-run sync write by).

Each trial is written as the reports see it: its value is its best epoch's metric (the reports'
rule, `best_epochs`), with the per-task scores and that epoch as user attributes; the seed is a
user attribute, never a parameter (it is noise, not a choice); start and end are the trial's
own times; a trial that ended before its planned epochs (ASHA, patience) is PRUNED. A seed
group (one configuration over several seeds, `seeds` > 1) is one record: the seeds' mean per
epoch, as the searcher was told, with each seed's scores. A member of population-based training
(the mirror keeps a schedule) is written at its last epoch, its final score (`scored_epoch`): an
earlier best may come from weights an exploit replaced; its best epoch stays an attribute.
"""

from __future__ import annotations

import time
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
from optuna.trial import TrialState

from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.studies.results import best_epoch, by_epoch, epoch_means
from mtl_tune.studies.spec import RAY_ID_ATTR, Objective, StudySpec, TrialReport
from mtl_tune.studies.store import uri_of

SCORE_ATTRS = METRIC_KEYS  # the user attributes of the scores at the best epoch
# an ended trial: (Ray trial id, config, per-epoch results; None when it errored)
Ended = tuple[str, Mapping[str, Any], Sequence[Mapping[str, Any]] | None]


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


class FrozenRecords:
    """Builds Optuna's record of ended trials; the mirror's settings say how (`metric`, `mode`,
    `objectives`, `stage`, `distributions`; `_schedules`: a population's trial -> schedule)."""

    metric: str
    mode: str
    stage: str
    objectives: tuple[Objective, ...]
    distributions: dict[str, BaseDistribution]
    _schedules: dict[str, list[dict[str, Any]]]
    schedule_keys: tuple[str, ...]  # population-based training: the keys a schedule changes

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
        error; the values at the epoch whose mean is best (a population's: its last); each
        seed's scores at that epoch (`seed_scores`) and its Ray trial id as user attributes.
        A seed that ended before it reported an epoch is left out like one that errored. None
        when no seed reported."""
        ok = [(t, c, r) for t, c, r in members if r is not None and by_epoch(r, self.metric)]
        means = epoch_means([r for _, _, r in ok], self.metric)
        if not means:
            return None
        at = self._scored_epoch(means)
        seed_scores, checkpoints, starts, ends = {}, {}, [], []
        for _, config, rows in ok:
            epochs = by_epoch(rows, self.metric)
            seed_scores[str(config.get("seed"))] = {
                k: float(epochs[at][k]) for k in SCORE_ATTRS if k in epochs[at]
            }
            if epochs[at].get("checkpoint"):
                checkpoints[str(config.get("seed"))] = str(epochs[at]["checkpoint"])
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
        if checkpoints:  # each seed's checkpoint at the epoch the group is valued at
            attrs["seed_checkpoints"] = checkpoints
        return self._frozen(ok[0][1], means, attrs, min(starts), max(ends))

    def keep_schedules(self, schedules: Mapping[str, list[dict[str, Any]]]) -> None:
        """Keeps population-based trials' schedules (trial id -> schedule) for their records."""
        self._schedules = {**getattr(self, "_schedules", {}), **schedules}

    def _schedule_of(self, trial_ids: Sequence[str]) -> dict[str, Any]:
        """{"schedule": ...} of a population-based trial (a group: its first seed's, as all
        of its seeds share it), else none. Optuna has no type for a schedule: the values each
        epoch of its lineage trained with, a change a row; its last values are parameters."""
        schedules = getattr(self, "_schedules", {})
        found = [schedules.pop(t) for t in trial_ids if t in schedules]
        return {"schedule": found[0]} if found else {}

    def _scored_epoch(self, epochs: Mapping[int, Mapping[str, Any]]) -> int:
        """The epoch a record is valued at: a population's member's last, else its best."""
        if getattr(self, "schedule_keys", ()):  # (None pickled by an older version)
            return max(epochs)
        return best_epoch(epochs, self.metric, self.mode)

    def _frozen(
        self, config: Mapping[str, Any], epochs: Mapping[int, Mapping[str, Any]],
        attrs: dict[str, Any], start: float, end: float,
    ) -> optuna.trial.FrozenTrial:
        best_at, scored_at = best_epoch(epochs, self.metric, self.mode), self._scored_epoch(epochs)
        scored, last_epoch = epochs[scored_at], max(epochs)
        pruned = last_epoch < TrialReport.from_result(epochs[last_epoch]).epochs_planned
        params = {k: config[k] for k in self.distributions if k in config}
        attrs = {
            **attrs, "stage": self.stage, "epochs": last_epoch, "best_epoch": best_at,
            **({"scored_epoch": scored_at} if getattr(self, "schedule_keys", ()) else {}),
            **{k: float(scored[k]) for k in SCORE_ATTRS if k in scored},
        }
        if scored.get("checkpoint") and "seed_checkpoints" not in attrs:
            attrs["checkpoint"] = str(scored["checkpoint"])  # of the epoch scored
        return optuna.trial.FrozenTrial(
            number=-1,  # numbered by the storage
            trial_id=-1,
            state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
            value=None,
            values=[float(scored[o.name]) for o in self.objectives],
            datetime_start=datetime.fromtimestamp(start),
            datetime_complete=datetime.fromtimestamp(end),
            params=params,
            distributions={k: self.distributions[k] for k in params},
            user_attrs=attrs,
            system_attrs={},
            intermediate_values={e: float(epochs[e][self.metric]) for e in sorted(epochs)},
        )

