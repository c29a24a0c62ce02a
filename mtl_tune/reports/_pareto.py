"""The Pareto front of a multi-objective study: which trials no other trial beats on every
objective, and the pairwise scatter of the objectives with the front highlighted.

Each trial enters as one point: its objectives at its best epoch by the study's scalar (the one
ASHA and patience prune on), the same point the Optuna record holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mtl_tune.reports._figures import TASK_LABELS, new_figure


def non_dominated(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Rows of the (n, k) `values` that no other row dominates (at least as good on every
    objective, better on one), each objective maximised or minimised as `modes` says."""
    signed = np.asarray(values, dtype=float) * np.where(np.asarray(modes) == "max", 1.0, -1.0)
    at_least = (signed[:, None, :] >= signed[None, :, :]).all(axis=2)  # [j, i]: j >= i everywhere
    better = (signed[:, None, :] > signed[None, :, :]).any(axis=2)
    dominated = np.any(at_least & better, axis=0)
    return np.asarray(~dominated, dtype=bool)


def pareto_front(best: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """`best` (one row per trial) with `on_front`, for the trials that reported every objective."""
    names = [name for name, _ in objectives]
    points = best.dropna(subset=names).reset_index(drop=True)
    mask = non_dominated(points[names].to_numpy(dtype=float), [mode for _, mode in objectives])
    return points.assign(on_front=mask)


def draw_pareto(points: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> Figure:
    """One panel per pair of objectives: every trial, the front's trials highlighted."""
    pairs = list(combinations([name for name, _ in objectives], 2))
    figure, axes = new_figure(len(pairs))
    front = points[points["on_front"]]
    rest = points[~points["on_front"]]
    for ax, (x, y) in zip(axes, pairs, strict=True):
        ax.scatter(rest[x], rest[y], s=25, color="0.65", label="dominated")
        ax.scatter(front[x], front[y], s=55, color="tab:red", edgecolor="black",
                   label="Pareto front", zorder=3)
        ax.set_xlabel(TASK_LABELS.get(x, x))
        ax.set_ylabel(TASK_LABELS.get(y, y))
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.suptitle("Pareto front: one point per trial at its best epoch; front in red")
    return figure
