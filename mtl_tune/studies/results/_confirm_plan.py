"""The winner re-run on fresh seeds (`study confirm`): which configurations, which seeds, and
what held.

A search picks its best configuration on the same seeds and dev examples that then report its
score, so that score is biased upwards (the winner's curse; Bouthillier et al. 2021, Dodge et al.
2020). `confirm_plan` takes the search's best `top` configurations, each with the score it was
selected with: the mean over its seeds of the study's metric at the epoch where that mean is best
(a seed group's rule; a single seed's best epoch). `confirm_scores` reads the fresh seeds' runs
at that same epoch (no choice is made on them) and gives each configuration's fresh mean, its
95% t-interval over the seeds and the part of the selection score that did not hold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.studies.results._group_scores import EPOCH, best_epoch, by_epoch, epoch_means
from mtl_tune.studies.results._selection import trial_config
from mtl_tune.studies.spec import SEED_GROUP_KEY, check_mode

CONFIRM = "confirm"  # the experiment that holds the fresh seeds' runs
SEED_KEYS = ("seed", "init_seed", "data_seed", SEED_GROUP_KEY)  # what a fresh seed replaces


@dataclass(frozen=True)
class Selected:
    """One configuration the search selected, as `study.json` keeps it (`to_json`)."""

    rank: int  # 1: the search's best
    config: dict[str, Any]  # the trial's configuration without its seeds
    score: float  # the mean over its seeds at `epoch`: what it was selected with
    epoch: int
    trials: tuple[str, ...]  # the search's trials of it
    seeds: tuple[int, ...]  # their seeds

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "trials": list(self.trials), "seeds": list(self.seeds)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Selected:
        return cls(int(raw["rank"]), dict(raw["config"]), float(raw["score"]),
                   int(raw["epoch"]), tuple(str(t) for t in raw["trials"]),
                   tuple(int(s) for s in raw["seeds"]))


@dataclass(frozen=True)
class ConfirmPlan:
    """The configurations to re-run and the fresh seeds each runs on."""

    selected: tuple[Selected, ...]
    seeds: tuple[int, ...]

    def cases(self) -> list[dict[str, Any]]:
        """The confirm experiment's trial configurations: each configuration on each seed."""
        return [{**s.config, "seed": seed} for s in self.selected for seed in self.seeds]

    def to_json(self) -> dict[str, Any]:
        return {"selected": [s.to_json() for s in self.selected], "seeds": list(self.seeds)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ConfirmPlan:
        return cls(tuple(Selected.from_json(s) for s in raw["selected"]),
                   tuple(int(s) for s in raw["seeds"]))


def _key(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def used_seeds(results: pd.DataFrame) -> set[int]:
    """Every seed any trial of the study ran with (its `seed`, `init_seed` and `data_seed`); a
    trial whose configuration sets no `seed` ran with the trainer's default one."""
    from mtl_tune.platform.config import TrainConfig

    used: set[int] = set()
    for key in ("seed", "init_seed", "data_seed"):
        for column in (f"config/{key}", key):
            if column in results:
                used |= {int(v) for v in results[column].dropna()
                         if isinstance(v, int | float | np.integer | np.floating)}
    seeds = results["seed"] if "seed" in results else pd.Series([None] * len(results))
    if len(results) and seeds.isna().any():
        used.add(TrainConfig.seed)
    return used


def fresh_seeds(used: set[int], count: int) -> tuple[int, ...]:
    """`count` seeds none of `used` (the `count` integers after the largest used)."""
    start = max(used, default=-1) + 1
    return tuple(range(start, start + count))


def _trial_rows(frame: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """Trial id -> its rows, each with its `epoch` as the epoch key the seed means read."""
    return {str(t): [{**row, EPOCH: int(row["epoch"])} for row in rows.to_dict("records")]
            for t, rows in frame.groupby("trial_id", sort=False)}


def confirm_plan(results: pd.DataFrame, metric: str, mode: str, top: int,
                 seeds: int) -> ConfirmPlan:
    """The search's best `top` configurations (by `metric`, `mode`) and `seeds` fresh seeds.

    Raises:
        MtlTuneError: `top` or `seeds` below 1, or fewer finished configurations than `top`.
    """
    check_mode(mode)
    for name, value in (("--top", top), ("--seeds", seeds)):
        if value < 1:
            raise MtlTuneError(f"{name} must be >= 1, but got {value}")
    search = results[(results["experiment"] != CONFIRM) & (results["status"] == "TERMINATED")]
    search = search[search["epoch"].notna()] if "epoch" in search else search.iloc[0:0]
    groups: dict[str, list[str]] = {}
    configs: dict[str, dict[str, Any]] = {}
    by_trial = _trial_rows(search)
    for trial_id, rows in by_trial.items():
        config = {k: v for k, v in trial_config(pd.Series(rows[0])).items() if k not in SEED_KEYS}
        groups.setdefault(_key(config), []).append(trial_id)
        configs[_key(config)] = config
    scored: list[tuple[float, int, str]] = []
    for key, trials in groups.items():
        means = epoch_means([by_trial[t] for t in trials], metric)
        means = {e: m for e, m in means.items() if metric in m and math.isfinite(m[metric])}
        if means:
            epoch = best_epoch(means, metric, mode)
            scored.append((means[epoch][metric], epoch, key))
    if len(scored) < top:
        raise MtlTuneError(
            f"--top {top} asks for more configurations than the study's {len(scored)} finished "
            f"one(s) with a dev {metric}: use --top {max(len(scored), 1)} or fewer")
    scored.sort(key=lambda s: -s[0] if mode == "max" else s[0])
    selected = []
    for rank, (score, epoch, key) in enumerate(scored[:top], start=1):
        trials = groups[key]
        trial_seeds = tuple(int(by_trial[t][0].get("seed") or 0) for t in trials)
        selected.append(Selected(rank, configs[key], float(score), epoch, tuple(trials),
                                 trial_seeds))
    return ConfirmPlan(tuple(selected), fresh_seeds(used_seeds(results), seeds))


def _interval(values: Sequence[float]) -> tuple[float, float]:
    """The 95% t-interval of the mean; NaN for fewer than two values."""
    from scipy import stats

    if len(values) < 2:
        return math.nan, math.nan
    mean, sem = float(np.mean(values)), float(stats.sem(values))
    if sem == 0.0:
        return mean, mean
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def confirm_scores(results: pd.DataFrame, plan: ConfirmPlan, metric: str,
                   mode: str) -> pd.DataFrame:
    """One row per selected configuration: its rank, the score it was selected with, its epoch,
    the fresh seeds' mean at that epoch with its 95% interval, how many fresh seeds have it,
    and `held_back`: how much worse than its selection score the fresh mean is (negative: it
    did better on fresh seeds)."""
    sign = 1.0 if mode == "max" else -1.0
    fresh = results[(results["experiment"] == CONFIRM) & results["epoch"].notna()]
    by_config: dict[str, list[list[dict[str, Any]]]] = {}
    for rows in _trial_rows(fresh).values():
        config = {k: v for k, v in trial_config(pd.Series(rows[0])).items() if k not in SEED_KEYS}
        by_config.setdefault(_key(config), []).append(rows)
    out = []
    for chosen in plan.selected:
        values = []
        for rows in by_config.get(_key(chosen.config), []):
            at = by_epoch(rows, metric).get(chosen.epoch)
            if at is not None:
                values.append(float(at[metric]))
        mean = float(np.mean(values)) if values else math.nan
        low, high = _interval(values)
        out.append({"rank": chosen.rank, "selected_trials": ", ".join(chosen.trials),
                    "epoch": chosen.epoch, "selected": chosen.score, "fresh_mean": mean,
                    "fresh_low": low, "fresh_high": high, "fresh_seeds": len(values),
                    "held_back": sign * (chosen.score - mean) if values else math.nan})
    return pd.DataFrame(out)
