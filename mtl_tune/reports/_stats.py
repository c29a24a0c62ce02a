"""Summaries over seeds: mean, sample std and a 95% interval of the mean that suits the count.

With fewer than `BOOTSTRAP_FROM` seeds a bootstrap cannot make an interval (two values resample
into little more than themselves), so the interval is Student's t (`scipy.stats.t`); from
`BOOTSTRAP_FROM` seeds on it is a seeded BCa bootstrap (`scipy.stats.bootstrap`). An interval
is cut to the values its metric can take (an accuracy to [0, 1], Pearson r to [-1, 1]): the
true mean lies in that range, so the cut interval covers it at least as often, and its method
says so where the cut bound. Below `FEW_SEEDS` seeds the spread rests on too few values to
trust and the interval is marked as wide.

`seeds_for_power` says how many seeds per row a two-sample comparison of seed means needs to
detect an observed difference, so a reader knows which changes are settled. With few seeds it
plans with an upper confidence bound on the seed sd, not the sd seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

BOOTSTRAP_FROM = 5  # seeds from which the interval is a bootstrap rather than a t-interval
FEW_SEEDS = 3  # below this many seeds an interval is marked as wide and no change is settled
SD_BOUND_LEVEL = 0.9  # one-sided level of the seed sd's upper bound that plans few seeds
T_INTERVAL = "t"
BCA_BOOTSTRAP = "BCa bootstrap"


@dataclass(frozen=True)
class SeedSummary:
    n: int
    mean: float  # nan when n == 0
    std: float  # sample std (ddof=1); nan when n < 2
    ci_low: float  # the interval of the mean; nan when n < 2
    ci_high: float
    method: str = ""  # T_INTERVAL or BCA_BOOTSTRAP (", cut to [a, b]"); "" without an interval

    @property
    def wide(self) -> bool:
        """The interval rests on fewer than FEW_SEEDS values: read it as rough."""
        return 2 <= self.n < FEW_SEEDS


def summarize_seeds(
    values: Sequence[float] | np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    bounds: tuple[float, float] | None = None,
) -> SeedSummary:
    """Mean, sample std and a `level` interval of the mean over seeds.

    Args:
        values: One value per seed (finite).
        n_resamples: Resamples of the bootstrap (from `BOOTSTRAP_FROM` seeds on).
        seed: Seed of the resampling, so a report is reproducible.
        level: Coverage of the interval.
        bounds: The values the metric can take (`METRIC_RANGES`); the interval is cut to them.

    Returns:
        The summary: a t-interval for 2 to `BOOTSTRAP_FROM - 1` seeds, a BCa bootstrap from
        `BOOTSTRAP_FROM` on; std and interval are nan with fewer than two values.
    """
    summary = _summary(values, n_resamples, seed, level)
    if bounds is None or not summary.method:
        return summary
    low, high = max(summary.ci_low, bounds[0]), min(summary.ci_high, bounds[1])
    if (low, high) == (summary.ci_low, summary.ci_high):
        return summary
    method = f"{summary.method}, cut to [{bounds[0]:.4g}, {bounds[1]:.4g}]"
    return SeedSummary(summary.n, summary.mean, summary.std, low, high, method)


def _summary(values: Sequence[float] | np.ndarray, n_resamples: int, seed: int,
             level: float) -> SeedSummary:
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

    n = 2 (z(1 - alpha/2) + z(power))^2 sigma^2 / delta^2, rounded up and at least `FEW_SEEDS`.
    sigma is the pooled sample sd s of the two rows' seed values, or, when either row has fewer
    than `BOOTSTRAP_FROM` seeds, its one-sided `SD_BOUND_LEVEL` upper confidence bound
    s sqrt(df / chi2(1 - SD_BOUND_LEVEL, df)), df = n1 + n2 - 2: an sd seen on 2 or 3 values
    is as likely to be far too small as about right, and planning with it settles too early.

    Returns:
        The count; nan when either row has fewer than 2 seeds or `delta` is nan; inf when
        `delta` is 0 and the seeds vary.
    """
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(a) < 2 or len(b) < 2 or math.isnan(delta):
        return float("nan")
    df = len(a) + len(b) - 2
    pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / df
    if delta == 0.0:
        return float("inf") if pooled > 0 else float(FEW_SEEDS)
    if min(len(a), len(b)) < BOOTSTRAP_FROM:
        pooled *= df / float(stats.chi2.ppf(1.0 - SD_BOUND_LEVEL, df))
    z = stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power)
    return float(max(FEW_SEEDS, math.ceil(2.0 * z * z * pooled / (delta * delta))))


@dataclass(frozen=True)
class Improvement:
    """P(a seed of the second row beats a seed of the first), ties counting half, and its
    percentile bootstrap interval (nan with fewer than two seeds on a side)."""

    probability: float
    ci_low: float
    ci_high: float


def probability_of_improvement(
    first: Sequence[float] | np.ndarray,
    second: Sequence[float] | np.ndarray,
    mode: str = "max",
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Improvement:
    """The probability of improvement of `second` over `first` across seeds (Agarwal et al.
    2021, rliable): over every pair of a seed of each, the share where `second` is better
    (higher for `mode` "max", lower for "min"), a tie counting half. The interval resamples
    each row's seeds on their own (a stratified bootstrap), seeded for a reproducible report.
    """
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    nan = float("nan")
    if len(a) == 0 or len(b) == 0:
        return Improvement(nan, nan, nan)
    sign = 1.0 if mode == "max" else -1.0

    def share(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # (..., n), (..., m) -> (...)
        diff = sign * (y[..., None, :] - x[..., :, None])
        return (diff > 0).mean(axis=(-2, -1)) + 0.5 * (diff == 0).mean(axis=(-2, -1))

    probability = float(share(a, b))
    if len(a) < 2 or len(b) < 2:
        return Improvement(probability, nan, nan)
    rng = np.random.default_rng(seed)
    resampled = share(a[rng.integers(0, len(a), (n_resamples, len(a)))],
                      b[rng.integers(0, len(b), (n_resamples, len(b)))])
    low, high = np.quantile(resampled, [(1 - level) / 2, (1 + level) / 2])
    return Improvement(probability, float(low), float(high))



IQM_FROM = 5  # seeds from which an aggregate score also gets its interquartile mean
AGGREGATES = ("overall", "mean_score")  # the scores over tasks that get one


def interquartile_mean(values: Sequence[float] | np.ndarray) -> float:
    """The mean of the middle half of `values` (25% trimmed from each end; Agarwal et al. 2021):
    a seed or two far from the rest move it less than the mean, and it wastes less than the
    median.

    Raises:
        ValueError: No values.
    """
    from scipy import stats

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("the interquartile mean needs at least one value, but got none")
    return float(stats.trim_mean(data, 0.25))
