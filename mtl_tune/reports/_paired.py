"""Paired comparison over dev examples: is one checkpoint's `overall` different from another's?

The statistic is the difference in `overall` = (SST acc + PD acc + (STS r + 1) / 2) / 3 between
the two checkpoints' per-example dev predictions (matched by example id), from per-example
correctness (SST, PD) and Pearson's r (STS).

- The p-value is a paired permutation test (`scipy.stats.permutation_test`, paired samples):
  under the null the two checkpoints are exchangeable, so each example's two predictions are
  swapped or not at random; two-sided.
- The interval is a paired percentile bootstrap: both sides resampled with the SAME example
  indices (each task's examples on their own).
- Several comparisons in one table are corrected together with Holm-Bonferroni (`holm`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from mtl_tune.platform.evaluate import TaskPredictions
from mtl_tune.platform.tasks import MAIN_TASKS, TASKS

MARKS = ((0.01, "**"), (0.05, "*"))
MARK_LEGEND = "* p < 0.05, ** p < 0.01 (no mark: not significant at 0.05)"


def significance_mark(p_value: float) -> str:
    """'**' for p < 0.01, '*' for p < 0.05, else ''."""
    for threshold, mark in MARKS:
        if p_value < threshold:
            return mark
    return ""


@dataclass(frozen=True)
class PairedComparison:
    difference: float  # overall(second) - overall(first) on every shared example
    ci_low: float  # paired percentile bootstrap interval of the difference
    ci_high: float
    p_value: float  # two-sided paired permutation test
    n_resamples: int
    examples: dict[str, int]  # task -> examples compared

    @property
    def mark(self) -> str:
        return significance_mark(self.p_value)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r along the last axis of (..., n) arrays; 0.0 where a row is constant."""
    xm = x - x.mean(axis=-1, keepdims=True)
    ym = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((xm * xm).sum(axis=-1) * (ym * ym).sum(axis=-1))
    num = (xm * ym).sum(axis=-1)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _aligned(
    task: str, first: TaskPredictions, second: TaskPredictions
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first predictions, second predictions, labels) on the ids both hold, in first's order."""
    if first.labels is None or second.labels is None:
        raise ValueError(f"task {task!r}: the paired bootstrap needs labeled predictions")
    if first.ids == second.ids:
        a, b = np.arange(len(first.ids)), np.arange(len(second.ids))
    else:
        where = {row_id: i for i, row_id in enumerate(second.ids)}
        pairs = [(i, where[row_id]) for i, row_id in enumerate(first.ids) if row_id in where]
        if len(pairs) < 2:
            raise ValueError(f"task {task!r}: the two predictions share fewer than 2 example ids")
        a, b = (np.asarray(side) for side in zip(*pairs, strict=True))
    labels = np.asarray(first.labels, dtype=float)[a]
    if not np.array_equal(labels, np.asarray(second.labels, dtype=float)[b]):
        raise ValueError(f"task {task!r}: the two predictions hold different labels for one id")
    pa = np.asarray(first.predictions, dtype=float)[a]
    pb = np.asarray(second.predictions, dtype=float)[b]
    return pa, pb, labels


def _task_deltas(
    task: str, pa: np.ndarray, pb: np.ndarray, y: np.ndarray, idx: np.ndarray
) -> np.ndarray:
    """The task's score difference (second - first) on each row of resampled indices `idx`."""
    if not TASKS[task].num_classes:  # the regression task: Pearson's r
        return _pearson_rows(pb[idx], y[idx]) - _pearson_rows(pa[idx], y[idx])
    diff = (pb == y).astype(float) - (pa == y).astype(float)
    return diff[idx].mean(axis=1)


def _overall_delta(sst: np.ndarray, para: np.ndarray, sts: np.ndarray) -> np.ndarray:
    # overall = (sst + para + (r + 1) / 2) / 3, so its difference weighs r by one half
    return (sst + para + sts / 2.0) / 3.0


Aligned = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # task -> (first, second, labels)


def _bootstrap_interval(
    data: Aligned, n_resamples: int, seed: int, level: float, chunk: int
) -> tuple[float, float]:
    """Percentile interval of the difference over resamples of shared example indices."""
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        deltas = [
            _task_deltas(t, *data[t], rng.integers(0, len(data[t][2]), (size, len(data[t][2]))))
            for t in MAIN_TASKS
        ]
        parts.append(_overall_delta(*deltas))
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(np.concatenate(parts), [tail, 100.0 - tail])
    return float(low), float(high)


def _permutation_p(data: Aligned, n_resamples: int, seed: int, chunk: int) -> float:
    """Two-sided p of a paired permutation test: each example's two predictions swapped or not."""
    sizes = [len(data[t][2]) for t in MAIN_TASKS]
    bounds = np.cumsum([0, *sizes])
    slices = {t: slice(bounds[i], bounds[i + 1]) for i, t in enumerate(MAIN_TASKS)}

    def difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        deltas = []
        for task in MAIN_TASKS:
            pa, pb, labels = a[..., slices[task]], b[..., slices[task]], data[task][2]
            if TASKS[task].num_classes:
                deltas.append((pb == labels).mean(axis=-1) - (pa == labels).mean(axis=-1))
            else:
                deltas.append(_pearson_rows(pb, labels) - _pearson_rows(pa, labels))
        return _overall_delta(*deltas)

    result = stats.permutation_test(
        (np.concatenate([data[t][0] for t in MAIN_TASKS]),
         np.concatenate([data[t][1] for t in MAIN_TASKS])),
        difference, permutation_type="samples", vectorized=True, n_resamples=n_resamples,
        alternative="two-sided", batch=chunk, rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def paired_comparison(
    first: Mapping[str, TaskPredictions],
    second: Mapping[str, TaskPredictions],
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    chunk: int = 250,
) -> PairedComparison:
    """Compares overall(second) - overall(first) over the dev examples both hold.

    Args:
        first: Per-task dev predictions of one checkpoint (`read_predictions`).
        second: The other checkpoint's, on the same examples (matched by id).
        n_resamples: Resamples of the bootstrap and of the permutation test each.
        seed: Seed of both.
        level: Coverage of the bootstrap interval.
        chunk: Resamples drawn at once (bounds memory: chunk x examples).

    Returns:
        The observed difference, its bootstrap interval, the permutation test's two-sided
        p-value and the examples used.

    Raises:
        ValueError: A task is missing or unlabeled, or the two sides share no examples.
    """
    if n_resamples < 1:
        raise ValueError(f"`n_resamples >= 1` must hold, but got n_resamples={n_resamples}")
    missing = [t for t in MAIN_TASKS if t not in first or t not in second]
    if missing:
        raise ValueError(f"both sides need predictions for {MAIN_TASKS}, but {missing} are missing")
    data = {t: _aligned(t, first[t], second[t]) for t in MAIN_TASKS}
    observed = _overall_delta(
        *(_task_deltas(t, *data[t], np.arange(len(data[t][2]))[None, :])[0] for t in MAIN_TASKS)
    )
    low, high = _bootstrap_interval(data, n_resamples, seed, level, chunk)
    return PairedComparison(
        difference=float(observed),
        ci_low=low,
        ci_high=high,
        p_value=_permutation_p(data, n_resamples, seed, chunk),
        n_resamples=n_resamples,
        examples={t: len(data[t][2]) for t in MAIN_TASKS},
    )


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the given order; nan entries stay nan, uncounted.

    Sorted ascending, the i-th of m p-values (1-based) becomes max over j <= i of
    min(1, (m - j + 1) p_(j)), so every adjusted p is at least its raw p and the order is kept.
    """
    raw = np.asarray(p_values, dtype=float)
    adjusted = np.full(raw.shape, np.nan)
    present = np.flatnonzero(~np.isnan(raw))
    order = present[np.argsort(raw[present], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * raw[index]))
        adjusted[index] = running
    return adjusted
