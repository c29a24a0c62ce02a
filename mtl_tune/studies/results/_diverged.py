"""Runs that diverged: a trial whose dev scores end at or below what a model that learned
nothing scores (Dodge et al. 2020 saw some fine-tuning runs fail so on small data).

A task's trivial baseline: for a classification task, the share of its dev split's most
frequent label (what always answering that label scores); for STS, a Pearson r of 0.1. A trial
diverged when, at its last reported epoch, a classification task's accuracy is not above its
baseline or the STS r is at or below 0.1. Reports flag such runs in every table and leave them
in every mean unless asked (`report ablation --drop-diverged`): a diverged run is a real outcome
of its configuration, and dropping it silently would flatter the configuration.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from mtl_tune.exceptions import DataError
from mtl_tune.studies.results._selection import TRIAL_KEYS

logger = logging.getLogger(__name__)

TRIVIAL_R = 0.1  # an STS Pearson r at or below it: no similarity learned
DIVERGED = "diverged"  # the results frame's column (bool, per trial)


def trivial_baselines(data_dir: Path | str | None) -> dict[str, float]:
    """Dev metric key -> the score a model that learned nothing gets: each classification
    task's majority share on its dev split (a split that cannot be read is left out, logged)
    and `TRIVIAL_R` for STS."""
    from mtl_tune.platform.data import read_split
    from mtl_tune.platform.data_files import split_path
    from mtl_tune.platform.tasks import MAIN_TASKS, task_spec

    baselines = {"sts_corr": TRIVIAL_R}
    for task in MAIN_TASKS:
        spec = task_spec(task)
        if spec.metric == "sts_corr" or data_dir is None:
            continue
        try:
            labels = read_split(split_path(Path(data_dir), task, "dev"), task, "dev").labels
        except DataError as err:
            logger.warning("no trivial baseline for %s (its dev split: %s)", spec.metric, err)
            continue
        if labels is not None and len(labels):
            counts = np.unique(labels, return_counts=True)[1]
            baselines[spec.metric] = float(counts.max() / counts.sum())
    return baselines


def mark_diverged(results: pd.DataFrame, baselines: dict[str, float]) -> pd.DataFrame:
    """`results` with a bool column `diverged`, the same on each of a trial's rows: whether its
    last reported epoch scores at or below a baseline (`trivial_baselines`)."""
    out = results.copy()
    reported = out[out["epoch"].notna()] if "epoch" in out else out.iloc[0:0]
    last = reported.sort_values("epoch").groupby(TRIAL_KEYS, sort=False).tail(1)
    flagged: set[tuple[str, str]] = set()
    for row in last.to_dict("records"):
        for metric, floor in baselines.items():
            value = row.get(metric)
            if value is None or not np.isfinite(float(value)):
                continue
            if float(value) <= floor:
                flagged.add((str(row["experiment"]), str(row["trial_id"])))
    keys = zip(out["experiment"].astype(str), out["trial_id"].astype(str), strict=True)
    out[DIVERGED] = [key in flagged for key in keys]
    return out
