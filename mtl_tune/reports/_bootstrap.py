"""Paired bootstrap over dev examples: is one checkpoint's `overall` different from another's?

Both checkpoints' per-example dev predictions are resampled with the SAME example indices (each
task's examples resampled on their own); on each resample the statistic is the difference in
`overall` = (SST acc + PD acc + (STS r + 1) / 2) / 3, from per-example correctness (SST, PD) and
Pearson's r (STS). The two-sided p-value inverts the percentile interval:
p = 2 * min(P(diff* <= 0), P(diff* >= 0)), with the usual +1 smoothing, capped at 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

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
class PairedBootstrap:
    difference: float  # overall(second) - overall(first) on every shared example
    ci_low: float  # percentile interval of the resampled differences
    ci_high: float
    p_value: float  # two-sided
    n_resamples: int
    examples: dict[str, int]  # task -> examples compared

    @property
    def mark(self) -> str:
        return significance_mark(self.p_value)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r of each row pair of (R, n) arrays; 0.0 where a row is constant."""
    xm = x - x.mean(axis=1, keepdims=True)
    ym = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xm * xm).sum(axis=1) * (ym * ym).sum(axis=1))
    num = (xm * ym).sum(axis=1)
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


def paired_bootstrap(
    first: Mapping[str, TaskPredictions],
    second: Mapping[str, TaskPredictions],
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    chunk: int = 250,
) -> PairedBootstrap:
    """Paired bootstrap of overall(second) - overall(first) over the dev examples.

    Args:
        first: Per-task dev predictions of one checkpoint (`read_predictions`).
        second: The other checkpoint's, on the same examples (matched by id).
        n_resamples: Bootstrap resamples (1,000 to 10,000 is usual).
        seed: Seed of the resampling.
        level: Coverage of the reported interval.
        chunk: Resamples drawn at once (bounds memory: chunk x examples indices).

    Returns:
        The observed difference, its interval, the two-sided p-value and the examples used.

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
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        deltas = [
            _task_deltas(t, *data[t], rng.integers(0, len(data[t][2]), (size, len(data[t][2]))))
            for t in MAIN_TASKS
        ]
        parts.append(_overall_delta(*deltas))
    resampled = np.concatenate(parts)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(resampled, [tail, 100.0 - tail])
    below, above = int((resampled <= 0).sum()), int((resampled >= 0).sum())
    p_value = min(1.0, 2.0 * (min(below, above) + 1) / (n_resamples + 1))
    return PairedBootstrap(
        difference=float(observed),
        ci_low=float(low),
        ci_high=float(high),
        p_value=p_value,
        n_resamples=n_resamples,
        examples={t: len(data[t][2]) for t in MAIN_TASKS},
    )
