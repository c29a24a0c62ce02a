"""What `mtl-tune train --replay STUDY:TRIAL` trains: a population-based trial's lineage, from
scratch on a fresh seed (`ReplayPlan`), and the replays a study holds, scored per seed
(`replay_scores`). No Ray, nothing written.

A trial of population-based training owes its weights to every run of its lineage (its donors'
epochs before each exploit, `_lineage`); a replay trains one run through the same epochs with
the values each epoch of the lineage trained with, the lineage's first configuration otherwise,
so that a user can tell whether the schedule scores on other seeds or the population was lucky.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_tune.exceptions import ConfigError, did_you_mean
from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.studies.results._folder import StudyInfo
from mtl_tune.studies.results._lineage import schedule, trial_lineage
from mtl_tune.studies.results._results import read_result_rows
from mtl_tune.studies.spec import study_keys
from mtl_tune.studies.store import load_study_spec, population_events, read_replays


@dataclass(frozen=True)
class ReplayPlan:
    """A trial's lineage to train again: `config` (training keys, seed left out) from epoch 1,
    changed as `schedule` says (`[{"epoch": 1, **values}, ...]`), for `epochs` epochs."""

    study: str
    folder: Path  # the study's
    trial: str
    config: Mapping[str, Any]
    schedule: list[dict[str, Any]]
    epochs: int
    lineage: list[dict[str, Any]]  # the runs it follows: [{"trial", "first", "last"}, ...]
    used_seeds: frozenset[int]  # the study's trials' seeds and those replayed already

    def fresh_seeds(self, count: int) -> list[int]:
        """The `count` smallest seeds >= 0 neither the study nor an earlier replay used."""
        seeds: list[int] = []
        candidate = 0
        while len(seeds) < count:
            if candidate not in self.used_seeds:
                seeds.append(candidate)
            candidate += 1
        return seeds


def replay_plan(info: StudyInfo, results: pd.DataFrame, trial: str) -> ReplayPlan:
    """The plan of `trial`'s replay; `results`: the study's (`study_results`).

    Raises:
        ConfigError: Not a population-based study, or no such trial, or the trial has no
            finished epoch, or a trial of its lineage lost its results (each named).
    """
    if info.search != "pbt":
        raise ConfigError(
            f"`train --replay` follows the schedule of a population-based trial, but study "
            f"{info.name!r} searched with {info.search!r}; train one of its trials again with "
            "the command `study status` prints")
    rows = results[results["trial_id"] == trial]
    if rows.empty:
        known = sorted(set(results["trial_id"].dropna()))
        raise ConfigError(f"study {info.name!r} has no trial {trial!r} (it has {len(known)}: "
                          f"{', '.join(known[:8])}{', ...' if len(known) > 8 else ''})"
                          f"{did_you_mean(trial, known)}")
    epochs = rows["epoch"].dropna()
    if epochs.empty:
        raise ConfigError(f"trial {trial!r} of study {info.name!r} reported no epoch: there is "
                          "no schedule to replay yet")
    paths = {str(r["trial_id"]): r["trial_path"] for _, r in results.iterrows()
             if isinstance(r.get("trial_path"), str)}

    def rows_of(trial_id: str) -> list[dict[str, Any]]:
        return read_result_rows(Path(paths[trial_id])) if trial_id in paths else []

    spec = load_study_spec(info.folder)
    keys = tuple(spec.pbt.mutations) if spec.pbt is not None else ()
    try:
        segments = trial_lineage(trial, int(epochs.max()), population_events(info.folder),
                                 rows_of)
    except KeyError as err:
        raise ConfigError(f"trial {err.args[0]!r} of trial {trial!r}'s lineage has no result "
                          f"for an epoch it trained, in study {info.name!r}: its schedule is "
                          "not known whole") from None
    training, _ = study_keys(segments[0].config)
    training.pop("seed", None)
    used = {int(s) for s in results["seed"].dropna()}
    used |= {int(r["seed"]) for r in read_replays(info.folder) if "seed" in r}
    return ReplayPlan(
        info.name, info.folder, trial, training, schedule(segments, keys), int(epochs.max()),
        [{"trial": s.trial, "first": s.first, "last": s.last} for s in segments],
        frozenset(used),
    )


def replay_scores(records: Iterable[Mapping[str, Any]], metric: str) -> pd.DataFrame:
    """One row per replay (trial, seed) at its last epoch: the epoch, `metric` and each task's
    score, and the run's folder."""
    rows = []
    for record in records:
        epochs: Sequence[Mapping[str, Any]] = record.get("epochs") or []
        if not epochs:
            continue
        last = epochs[-1]
        rows.append({"trial_id": record.get("trial"), "seed": record.get("seed"),
                     "epoch": last.get("epoch"),
                     **{k: last.get(k) for k in dict.fromkeys((metric, *METRIC_KEYS))},
                     "out": record.get("out")})
    return pd.DataFrame(rows)
