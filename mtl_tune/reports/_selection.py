"""Which results enter a table: each trial's best epoch, and the trials' status counts.

Finished trials (TERMINATED) enter with their best epoch; running or paused trials enter with
their best epoch so far; pending and errored trials are left out (and named in the footnotes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

STATUS_WORDS = {
    "TERMINATED": "done",
    "RUNNING": "running",
    "PAUSED": "paused",
    "PENDING": "pending",
    "ERROR": "error",
}
COUNTED = ("TERMINATED", "RUNNING", "PAUSED")  # statuses whose reported epochs enter tables
TRIAL_KEYS = ["experiment", "trial_id"]


def _check_mode(mode: str) -> None:
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', but got {mode!r}")


def trials(results: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its identity, trainable, status, error and number of reported epochs."""
    grouped = results.groupby(TRIAL_KEYS, sort=False)
    out = grouped[["trainable", "status", "error", "seed"]].first()
    out["epochs_reported"] = grouped["epoch"].count()
    return out.reset_index()


def best_epochs(results: pd.DataFrame, metric: str = "overall", mode: str = "max") -> pd.DataFrame:
    """Each counted trial's row at its best epoch by `metric` (the earliest epoch on a tie).

    Args:
        results: The tidy frame of `load_results`.
        metric: The dev metric to rank epochs by.
        mode: "max" or "min".

    Returns:
        One row per trial that is finished, running or paused and has reported `metric`, with
        every column of `results`.
    """
    _check_mode(mode)
    if metric not in results:
        raise ValueError(f"metric {metric!r} is not among the reported columns of the results")
    counted = results[results["status"].isin(COUNTED) & np.isfinite(results[metric].astype(float))]
    if counted.empty:
        return results.iloc[0:0].copy()
    values = counted[metric].astype(float)
    key = values if mode == "max" else -values
    best = key.groupby([counted[k] for k in TRIAL_KEYS], sort=False).idxmax()
    return counted.loc[best.to_numpy()].reset_index(drop=True)


def better(a: float, b: float, mode: str) -> bool:
    return a > b if mode == "max" else a < b


def status_label(statuses: Iterable[str]) -> str:
    """'2 done, 1 running, 1 error': counts of trial statuses in a fixed order."""
    counts = Counter(statuses)
    words = [
        f"{counts[status]} {word}" for status, word in STATUS_WORDS.items() if counts[status]
    ]
    words += [f"{n} {s.lower()}" for s, n in counts.items() if s not in STATUS_WORDS]
    return ", ".join(words) if words else "0 trials"


def row_order(names: Iterable[str], registry: Sequence[str]) -> list[str]:
    """Registered names in registry order, then any others in order of first appearance."""
    present = list(dict.fromkeys(names))
    known = [name for name in registry if name in present]
    return known + [name for name in present if name not in registry]
