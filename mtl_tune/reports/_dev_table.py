"""The dev table in the paper's shape: one row per model iteration, summarised over its seeds.

Each trial enters with its best epoch by the study metric (dev `overall` by default); a row gives
the mean, sample std and 95% CI (t or BCa bootstrap, by seed count, cut to the metric's range)
over its trials of each metric, the change of the study metric's mean against the previous and
the first row, and its best checkpoint (the best trial at its best epoch), which the test table
evaluates and the paired permutation test compares; and how many seeds a row would need to
settle its change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mtl_tune.platform.checkpoint import PREDICTIONS_FILE, read_predictions
from mtl_tune.platform.metrics import METRIC_KEYS, METRIC_RANGES
from mtl_tune.reports._budget import trial_hours
from mtl_tune.reports._paired import holm, paired_comparison, significance_mark
from mtl_tune.reports._selection import status_label
from mtl_tune.reports._stats import (
    AGGREGATES,
    IQM_FROM,
    interquartile_mean,
    probability_of_improvement,
    seeds_for_power,
    summarize_seeds,
)
from mtl_tune.studies import DIVERGED, TRIAL_KEYS, best_epochs

logger = logging.getLogger(__name__)


def _best_checkpoint(
    results: pd.DataFrame, best: pd.DataFrame, metric: str, mode: str
) -> dict[str, Any]:
    """The row's best trial and the checkpoint of its best epoch (else its best kept one)."""
    empty = {"best_experiment": None, "best_trial_id": None, "best_epoch": pd.NA,
             "best_value": np.nan, "best_checkpoint": None}
    if best.empty:
        return empty
    ranked = best.sort_values(metric, ascending=mode == "min", kind="stable")
    top = ranked.iloc[0]
    row = top
    if not isinstance(top["checkpoint"], str):
        trial = results[(results["experiment"] == top["experiment"])
                        & (results["trial_id"] == top["trial_id"])
                        & results["checkpoint"].notna()]
        if not trial.empty:
            row = trial.sort_values(metric, ascending=mode == "min", kind="stable").iloc[0]
            logger.warning("best epoch's checkpoint of trial %s was not kept; using epoch %s",
                           top["trial_id"], row["epoch"])
    return {
        "best_experiment": row["experiment"],
        "best_trial_id": row["trial_id"],
        "best_epoch": row["epoch"],
        "best_value": float(row[metric]),
        "best_checkpoint": row["checkpoint"],
    }


def dev_table(
    results: pd.DataFrame,
    order: Sequence[str],
    metric: str = "overall",
    mode: str = "max",
    descriptions: Mapping[str, str] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per trainable in `order`: metrics over its trials at their best epochs.

    Args:
        results: The tidy frame of `load_results`.
        order: The trainables, one row each, in table order (registry order for ablations).
        metric: The dev metric that picks each trial's best epoch and each row's best trial.
        mode: "max" or "min".
        descriptions: Trainable -> one-line description of what it changes.
        n_resamples: Resamples of the bootstrap CI over seeds (rows of 5 seeds or more).
        seed: Seed of that bootstrap.

    Returns:
        Columns `iteration`, `description`, `trials` (e.g. "2 done, 1 running"), `complete`
        (every trial finished), `n` (trials counted); for each metric of METRIC_KEYS its mean
        under the metric's name and `<metric>_std`, `<metric>_ci_low`, `<metric>_ci_high`,
        `<metric>_ci_method`;
        `delta_prev` and `delta_base` (the study metric's mean minus the previous / first row's);
        `seeds_needed` (seeds per row to detect `delta_prev` at 80% power, `seeds_for_power`);
        `p_better`, `p_better_ci_low`, `p_better_ci_high` (the probability that a seed of the
        row beats a seed of the previous one, `probability_of_improvement`);
        `best_experiment`, `best_trial_id`, `best_epoch`, `best_value`, `best_checkpoint`;
        `device_hours` (the row's trials' wall time times the GPUs, else the CPUs, each held)
        and `device` ("GPU" or "CPU").
    """
    best = best_epochs(results, metric, mode)
    statuses = results.drop_duplicates(TRIAL_KEYS)[["trainable", "status"]]
    rows, seed_values = [], []
    for name in order:
        mine = best[best["trainable"] == name]
        labels = statuses.loc[statuses["trainable"] == name, "status"].tolist()
        diverged = int(mine[DIVERGED].sum()) if DIVERGED in mine else 0
        row: dict[str, Any] = {
            "iteration": name,
            "description": (descriptions or {}).get(name, ""),
            "trials": status_label(labels),
            "diverged": diverged,
            "complete": bool(labels) and all(s == "TERMINATED" for s in labels),
            "n": len(mine),
        }
        for key in METRIC_KEYS:
            summary = summarize_seeds(mine[key].astype(float).to_numpy(), n_resamples, seed,
                                      bounds=METRIC_RANGES[key])
            row[key] = summary.mean
            row[f"{key}_std"] = summary.std
            row[f"{key}_ci_low"] = summary.ci_low
            row[f"{key}_ci_high"] = summary.ci_high
            row[f"{key}_ci_method"] = summary.method
            if key in AGGREGATES:  # robust to a seed or two far from the rest
                values = mine[key].astype(float).to_numpy()
                row[f"{key}_iqm"] = interquartile_mean(values) if len(values) >= IQM_FROM else (
                    np.nan)
        seed_values.append(mine[metric].astype(float).to_numpy())
        row.update(_best_checkpoint(results, mine, metric, mode))
        rows.append(row)
    table = pd.DataFrame(rows)
    values = table[metric].astype(float)
    table.insert(table.columns.get_loc("best_experiment"), "delta_prev", values - values.shift(1))
    base = values.iloc[0] if len(values) else np.nan
    table.insert(table.columns.get_loc("best_experiment"), "delta_base", values - base)
    deltas = table["delta_prev"].tolist()[1:]
    needed = [np.nan] + [
        seeds_for_power(float(delta), seed_values[i], seed_values[i + 1])
        for i, delta in enumerate(deltas)
    ]
    table.insert(table.columns.get_loc("best_experiment"), "seeds_needed", needed[: len(table)])
    better = [None] + [probability_of_improvement(seed_values[i], seed_values[i + 1], mode,
                                                  n_resamples, seed)
                       for i in range(len(seed_values) - 1)]
    for column, part in (("p_better", "probability"), ("p_better_ci_low", "ci_low"),
                         ("p_better_ci_high", "ci_high")):
        table.insert(table.columns.get_loc("best_experiment"), column,
                     [np.nan if b is None else getattr(b, part) for b in better][: len(table)])
    hours, device = trial_hours(results)
    trainable = results.groupby(["experiment", "trial_id"], sort=False)["trainable"].first()
    spent = hours.groupby(trainable.reindex(hours.index)).sum()
    table["device_hours"] = [float(spent.get(name, 0.0)) for name in table["iteration"]]
    table["device"] = device
    table["best_epoch"] = table["best_epoch"].astype("Int64")
    return table


def add_significance(
    table: pd.DataFrame, n_resamples: int = 2000, seed: int = 0
) -> tuple[pd.DataFrame, list[str]]:
    """Compares each row's best checkpoint with the previous row's over the dev examples.

    Returns:
        The table with `diff_prev` (overall difference on the dev examples), `diff_ci_low`,
        `diff_ci_high` (paired bootstrap), `p_value` (paired permutation test), `p_holm` (Holm
        over every comparison of the table) and `mark` ("*", "**" or "", from `p_holm`), and
        notes on rows skipped.
    """
    columns: dict[str, list[Any]] = {
        k: [] for k in ("diff_prev", "diff_ci_low", "diff_ci_high", "p_value")
    }
    notes: list[str] = []
    previous, previous_checkpoint = None, None
    rows = list(table.itertuples(index=False))
    for position, row in enumerate(tqdm(rows, desc="significance", unit="row", disable=None,
                                        leave=False)):
        current = _dev_predictions(row.best_checkpoint)
        result = None
        if position > 0 and previous is not None and current is not None:
            try:
                result = paired_comparison(previous, current, n_resamples, seed)
            except ValueError as err:
                notes.append(f"{row.iteration}: no significance test ({err})")
        elif position > 0 and isinstance(row.best_checkpoint, str) and previous_checkpoint:
            notes.append(
                f"{row.iteration}: no significance test ({PREDICTIONS_FILE} missing in its "
                "best checkpoint or the previous row's)"
            )
        columns["diff_prev"].append(np.nan if result is None else result.difference)
        columns["diff_ci_low"].append(np.nan if result is None else result.ci_low)
        columns["diff_ci_high"].append(np.nan if result is None else result.ci_high)
        columns["p_value"].append(np.nan if result is None else result.p_value)
        previous = current
        previous_checkpoint = row.best_checkpoint if isinstance(row.best_checkpoint, str) else None
    adjusted = holm(columns["p_value"])
    marks = ["" if np.isnan(p) else significance_mark(float(p)) for p in adjusted]
    return table.assign(**columns, p_holm=adjusted, mark=marks), notes


def _dev_predictions(checkpoint: Any) -> Mapping[str, Any] | None:
    if not isinstance(checkpoint, str):
        return None
    path = Path(checkpoint) / PREDICTIONS_FILE
    return read_predictions(path) if path.is_file() else None

