"""A seed group's scores: one configuration run over several seeds is judged on their mean.

Pure functions over per-epoch result rows (no Ray), shared by the seed-group searcher, which
tells Optuna the group's best epoch, and the Optuna record, which stores one trial per group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import Any

from mtl_tune.studies.spec import ITERATION

EPOCH = ITERATION  # a trial's epoch, as Tune counts its reports


def by_epoch(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[int, Mapping[str, Any]]:
    """epoch -> its result, for the epochs that reported a finite `metric` (a restored trial
    reports its later epochs again: the last report counts)."""
    out: dict[int, Mapping[str, Any]] = {}
    for row in rows:
        value = row.get(metric)
        if EPOCH in row and isinstance(value, int | float) and math.isfinite(value):
            out[int(row[EPOCH])] = row
    return out


def best_epoch(epochs: Mapping[int, Mapping[str, Any]], metric: str, mode: str) -> int:
    """The epoch with the best `metric`, the earliest on a tie (the reports' rule)."""
    sign = 1.0 if mode == "max" else -1.0
    return min(epochs, key=lambda e: (-sign * float(epochs[e][metric]), e))


def epoch_means(
    seed_rows: Sequence[Sequence[Mapping[str, Any]]], metric: str
) -> dict[int, dict[str, float]]:
    """epoch -> the mean over seeds of every number each seed reported, for the epochs every
    seed reached (seeds of a group stop together; one that errored is left out by the caller)."""
    seeds = [e for e in (by_epoch(rows, metric) for rows in seed_rows) if e]
    if not seeds:
        return {}
    common = set.intersection(*(set(e) for e in seeds))
    means: dict[int, dict[str, float]] = {}
    for epoch in sorted(common):
        rows = [e[epoch] for e in seeds]
        keys = set.intersection(*({k for k, v in r.items() if _number(v)} for r in rows))
        means[epoch] = {k: fmean(float(r[k]) for r in rows) for k in sorted(keys)}
    return means


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
