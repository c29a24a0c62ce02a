"""The one rule for "best": a trial's best epoch, a study's best trial, by metric and mode.

Finished trials (TERMINATED) enter with their best epoch; running, paused or interrupted trials
with their best epoch so far; pending and errored trials are left out. On a tie the earliest
epoch wins.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtl_tune.names import score_name
from mtl_tune.studies.spec import check_mode

TRIAL_KEYS = ["experiment", "trial_id"]
UNFINISHED = ("RUNNING", "PENDING", "PAUSED")  # Tune's, while a driver runs the study
INTERRUPTED = "INTERRUPTED"  # unfinished, and no driver runs the study (killed, Ctrl-C)
COUNTED = ("TERMINATED", "RUNNING", "PAUSED", INTERRUPTED)  # states whose reported epochs count


def best_epochs(
    results: pd.DataFrame, metric: str = "overall", mode: str = "max", by: list[str] | None = None
) -> pd.DataFrame:
    """Each counted group's row at its best epoch by `metric` (the earliest on a tie).

    Args:
        results: The study's results frame (`load_results`).
        metric: The dev metric to rank epochs by.
        mode: "max" or "min".
        by: The columns that make a group: a trial by default (`TRIAL_KEYS`).

    Returns:
        One row per group that is finished, running, paused or interrupted and has reported
        `metric`, with
        every column of `results`.
    """
    check_mode(mode)
    if metric not in results:
        raise ValueError(f"metric {metric!r} is not among the reported columns of the results")
    counted = results[results["status"].isin(COUNTED) & np.isfinite(results[metric].astype(float))]
    if counted.empty:
        return results.iloc[0:0].copy()
    values = counted[metric].astype(float)
    key = values if mode == "max" else -values
    best = key.groupby([counted[k] for k in by or TRIAL_KEYS], sort=False).idxmax()
    return counted.loc[best.to_numpy()].reset_index(drop=True)


def best_row(results: pd.DataFrame, metric: str = "overall", mode: str = "max") -> pd.Series:
    """The study's best trial at its best epoch (a row of `results`)."""
    best = best_epochs(results, metric, mode)
    if best.empty:
        raise ValueError(f"no finished or running trial has reported {metric!r} yet")
    values = best[metric].astype(float)
    return best.loc[values.idxmax() if mode == "max" else values.idxmin()]


def trial_config(row: pd.Series) -> dict[str, Any]:
    """The config a trial ran with, from its row's `config/<key>` columns (a key another
    trial of the study set but this one did not is empty, and left out)."""
    def empty(value: Any) -> bool:
        return value is None or (isinstance(value, float) and np.isnan(value))

    return {str(k).removeprefix("config/"): v for k, v in row.items()
            if str(k).startswith("config/") and not empty(v)}


def best_trial(results: pd.DataFrame, metric: str = "overall",
               mode: str = "max") -> dict[str, Any] | None:
    """The study's best trial as JSON values: its id, experiment, trainable, epoch, dev
    `metric`, checkpoint (None when not kept) and the `mtl-tune train` command that trains it
    again; None before any trial reported `metric`."""
    from mtl_tune.platform.rerun import train_command

    if best_epochs(results, metric, mode).empty:
        return None
    row = best_row(results, metric, mode)
    return {
        "trial_id": str(row["trial_id"]), "experiment": str(row["experiment"]),
        "trainable": str(row["trainable"]), "epoch": int(row["epoch"]), "metric": metric,
        "value": float(row[metric]),
        "checkpoint": row["checkpoint"] if isinstance(row["checkpoint"], str) else None,
        "command": train_command(str(row["trainable"]), trial_config(row)),
    }


def best_rerun(results: pd.DataFrame, metric: str = "overall", mode: str = "max") -> str | None:
    """One line on the study's best trial (`best_trial`): its epoch and score, its checkpoint,
    and the `mtl-tune train` command that trains it again; None before any trial reported
    `metric`."""
    best = best_trial(results, metric, mode)
    if best is None:
        return None
    return (f"Best single trial {best['trial_id']} ({best['trainable']}) at epoch "
            f"{best['epoch']}: dev {score_name(metric)} {best['value']:.4f}; its checkpoint: "
            f"{best['checkpoint'] or 'not kept'}; train it again with: {best['command']}")
