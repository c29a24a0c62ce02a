"""What a study holds right now: one row per trial, and the list of studies in a storage root."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.studies.results._results import study_results
from mtl_tune.studies.results._selection import TRIAL_KEYS, best_epochs
from mtl_tune.studies.store import (
    Holder,
    disk_usage,
    existing_study,
    live_holder,
    open_study,
    planned_trials,
    read_meta,
    study_names,
    uri_of,
)

ENDED = ("TERMINATED", "ERROR", "MISSING")  # "MISSING": finished, its results since lost


def trial_table(folder: Path) -> pd.DataFrame:
    """One row per trial of every experiment: state, searched config, epochs, best dev metrics.

    A group-by over the results frame. The best trial (by the study's metric, over its epochs)
    is marked in the `best` column. Unfinished trials of a study that no driver runs (killed,
    interrupted) are INTERRUPTED (`study_results`).
    """
    read_meta(folder)  # a damaged study.json is an error, not an empty study
    try:
        info = open_study(folder)
    except MtlTuneError:  # launched, but no trial created yet
        return pd.DataFrame()
    results = study_results(info)
    trials = results.drop_duplicates(TRIAL_KEYS).set_index(TRIAL_KEYS)
    config = [c for c in trials.columns if c.startswith("config/")]
    searched = [c for c in config if c.removeprefix("config/") not in ("trainable", "seed")
                and trials[c].astype(str).nunique() > 1]
    table = trials[["status", "trainable", "seed", *searched]].rename(
        columns={"status": "state", **{c: c.removeprefix("config/") for c in searched}})
    table["epochs"] = results.groupby(TRIAL_KEYS)["epoch"].max().fillna(0).astype(int)
    best = best_epochs(results, info.metric, info.mode).set_index(TRIAL_KEYS)
    shown = [k for k in METRIC_KEYS if k in best]
    table = table.join(best[shown]).reset_index()
    table["best"] = ""
    if info.metric in table and table[info.metric].notna().any():
        scores = table[info.metric]
        table.loc[scores.idxmax() if info.mode == "max" else scores.idxmin(), "best"] = "*"
    return table


def study_status(root: Path, name: str) -> pd.DataFrame:
    return trial_table(existing_study(root, name))


def not_ended(table: pd.DataFrame, planned: int | None) -> int:
    """Planned trials neither finished nor errored, those Tune never created included (a study
    interrupted between two trials); with no plan known (`planned` None), the table's."""
    ended = int(table["state"].isin(ENDED).sum()) if len(table) else 0
    return max(0, (planned if planned is not None else len(table)) - ended)


def study_driver(root: Path, name: str) -> Holder | None:
    """The driver running the study now (pid, host, start), or None."""
    return live_holder(existing_study(root, name))


def list_studies(root: Path) -> pd.DataFrame:
    """Every study under `root`: its name (its folder's), the name it was launched as if it
    differs, its folder, search, trials, planned trials, finished trials, metric and best value,
    bytes on disk."""
    rows = []
    for name in study_names(root):
        folder = existing_study(root, name)
        meta = read_meta(folder)
        table = trial_table(folder)
        metric = meta.metric
        done = int((table["state"] == "TERMINATED").sum()) if len(table) else 0
        best = (
            float(table[metric].max() if meta.mode == "max" else table[metric].min())
            if (len(table) and metric in table)
            else float("nan")
        )
        rows.append(
            {
                "study": name,  # the folder's: a copied study is itself
                "launched_as": meta.name if meta.name != name else None,
                "folder": uri_of(folder),
                "search": meta.search,
                "trials": len(table),
                "planned": planned_trials(folder),
                "finished": done,
                "metric": metric,
                "best": best,
                "disk_bytes": disk_usage(folder),
            }
        )
    return pd.DataFrame(rows)
