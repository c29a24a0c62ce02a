"""Summaries over seeds: mean, sample std and a 95% interval of the mean that suits the count.

With fewer than `BOOTSTRAP_FROM` seeds a bootstrap cannot make an interval (two values resample
into little more than themselves), so the interval is Student's t (`scipy.stats.t`); from
`BOOTSTRAP_FROM` seeds on it is a seeded BCa bootstrap (`scipy.stats.bootstrap`).

`seeds_for_power` says how many seeds per row a two-sample comparison of seed means needs to
detect an observed difference, so a reader knows which changes are settled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

BOOTSTRAP_FROM = 5  # seeds from which the interval is a bootstrap rather than a t-interval
T_INTERVAL = "t"
BCA_BOOTSTRAP = "BCa bootstrap"


@dataclass(frozen=True)
class SeedSummary:
    n: int
    mean: float  # nan when n == 0
    std: float  # sample std (ddof=1); nan when n < 2
    ci_low: float  # the interval of the mean; nan when n < 2
    ci_high: float
    method: str = ""  # T_INTERVAL or BCA_BOOTSTRAP; "" without an interval


def summarize_seeds(
    values: Sequence[float] | np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> SeedSummary:
    """Mean, sample std and a `level` interval of the mean over seeds.

    Args:
        values: One value per seed (finite).
        n_resamples: Resamples of the bootstrap (from `BOOTSTRAP_FROM` seeds on).
        seed: Seed of the resampling, so a report is reproducible.
        level: Coverage of the interval.

    Returns:
        The summary: a t-interval for 2 to `BOOTSTRAP_FROM - 1` seeds, a BCa bootstrap from
        `BOOTSTRAP_FROM` on; std and interval are nan with fewer than two values.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"`0 < level < 1` must hold, but got level={level}")
    if n_resamples < 1:
        raise ValueError(f"`n_resamples >= 1` must hold, but got n_resamples={n_resamples}")
    data = np.asarray(values, dtype=float)
    n = len(data)
    nan = float("nan")
    if n == 0:
        return SeedSummary(0, nan, nan, nan, nan)
    mean = float(data.mean())
    if n < 2:
        return SeedSummary(1, mean, nan, nan, nan)
    std = float(data.std(ddof=1))
    if n < BOOTSTRAP_FROM:
        half = float(stats.t.ppf(0.5 + level / 2, df=n - 1)) * std / math.sqrt(n)
        return SeedSummary(n, mean, std, mean - half, mean + half, T_INTERVAL)
    if std == 0.0:  # every seed alike: the bootstrap distribution is a point
        return SeedSummary(n, mean, std, mean, mean, BCA_BOOTSTRAP)
    result = stats.bootstrap(
        (data,), np.mean, confidence_level=level, n_resamples=n_resamples, method="BCa",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return SeedSummary(n, mean, std, float(interval.low), float(interval.high), BCA_BOOTSTRAP)


POWER = 0.8
ALPHA = 0.05


def seeds_for_power(
    delta: float,
    first: Sequence[float] | np.ndarray,
    second: Sequence[float] | np.ndarray,
    alpha: float = ALPHA,
    power: float = POWER,
) -> float:
    """Seeds per row to detect `delta` between two rows' seed means (two-sided, normal approx.).

    n = 2 (z(1 - alpha/2) + z(power))^2 sigma^2 / delta^2, sigma the pooled sample sd of the two
    rows' seed values, rounded up and at least 2 (the fewest seeds that estimate a spread).

    Returns:
        The count; nan when either row has fewer than 2 seeds or `delta` is nan; inf when
        `delta` is 0 and the seeds vary.
    """
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(a) < 2 or len(b) < 2 or math.isnan(delta):
        return float("nan")
    pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    if delta == 0.0:
        return float("inf") if pooled > 0 else 2.0
    z = stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power)
    return float(max(2, math.ceil(2.0 * z * z * pooled / (delta * delta))))
