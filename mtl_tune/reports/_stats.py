"""Summaries over seeds: mean, sample std and a seeded percentile-bootstrap CI of the mean."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SeedSummary:
    n: int
    mean: float  # nan when n == 0
    std: float  # sample std (ddof=1); nan when n < 2
    ci_low: float  # percentile bootstrap of the mean; nan when n < 2
    ci_high: float


def summarize_seeds(
    values: Sequence[float] | np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> SeedSummary:
    """Mean, sample std and a `level` percentile-bootstrap CI of the mean over seeds.

    Args:
        values: One value per seed (finite).
        n_resamples: Bootstrap resamples (drawn with replacement, vectorised).
        seed: Seed of the resampling, so a report is reproducible.
        level: Coverage of the interval.

    Returns:
        The summary; std and interval are nan with fewer than two values.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"`0 < level < 1` must hold, but got level={level}")
    if n_resamples < 1:
        raise ValueError(f"`n_resamples >= 1` must hold, but got n_resamples={n_resamples}")
    data = np.asarray(values, dtype=float)
    n = len(data)
    if n == 0:
        return SeedSummary(0, float("nan"), float("nan"), float("nan"), float("nan"))
    mean = float(data.mean())
    if n < 2:
        return SeedSummary(1, mean, float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, n, size=(n_resamples, n))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return SeedSummary(n, mean, float(data.std(ddof=1)), float(low), float(high))
