"""What a study holds right now: one row per trial, and the list of studies in a storage root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.studies.results._folder import StudyInfo, open_study
from mtl_tune.studies.results._results import study_results
from mtl_tune.studies.results._selection import TRIAL_KEYS, best_epochs
from mtl_tune.studies.store import (
    Holder,
    StudyStore,
    disk_usage,
    existing_study,
    live_holder,
    read_digest,
    study_folder,
    study_names,
    uri_of,
)

ENDED = ("TERMINATED", "ERROR", "MISSING")  # "MISSING": finished, its results since lost


@dataclass(frozen=True)
class StudyView:
    """A study as one command sees it, opened once: its metadata and record (`info`), one
    results frame, the trial table made from it, and the driver running it now (None: none)."""

    info: StudyInfo
    results: pd.DataFrame
    trials: pd.DataFrame
    driver: Holder | None
    trial_files: bool = True  # whether the trials' folders were read (else the digest alone)


def view_study(folder: Path) -> StudyView:
    """Opens a study folder once (one read of study.json, of the spec and of the record; one
    results frame; one read of the lock).

    Raises:
        MtlTuneError: study.json is malformed, or an experiment cannot be read.
    """
    info = open_study(folder, empty_ok=True)  # a damaged study.json is an error
    driver = live_holder(folder)
    results = study_results(info, running=driver is not None)
    return StudyView(info, results, trial_table(info, results), driver)


def status_view(root: Path, name: str, trial_files: bool = False) -> StudyView:
    """Study `name` of the storage `root` as `study status` shows it. On an object store it is
    read from the study's own files alone (metadata, trial record, results digest: a few
    objects, however many trials it has) when its digest holds every experiment, and then no
    checkpoint is known; else (a study on a disk, one launched before the digest existed, or
    `trial_files`) from its trials' folders too (`view_study`).

    Raises:
        MtlTuneError: study.json is malformed, or an experiment cannot be read.
    """
    if not trial_files and StudyStore.at(study_folder(root, name)).on_store:
        folder = existing_study(root, name, trial_files=False)
        info = open_study(folder, empty_ok=True)
        digest = read_digest(folder)
        if set(info.experiments) <= set(digest):
            driver = live_holder(folder)
            results = study_results(info, running=driver is not None, digest=digest)
            return StudyView(info, results, trial_table(info, results), driver, False)
    return view_study(existing_study(root, name))


def trial_table(info: StudyInfo, results: pd.DataFrame) -> pd.DataFrame:
    """One row per trial of every experiment: state, searched config, epochs, best dev metrics.

    A group-by over the study's results frame (`study_results`). The best trial (by the
    study's metric, over its epochs) is marked in the `best` column. Unfinished trials of a
    study that no driver runs (killed, interrupted) are INTERRUPTED.
    """
    if results["trial_id"].isna().all():  # launched, but no trial created yet
        return pd.DataFrame()
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
    """The trial table of study `name` in the storage `root` (`status_view`)."""
    return status_view(root, name).trials


def not_ended(table: pd.DataFrame, planned: int | None) -> int:
    """Planned trials neither finished nor errored, those Tune never created included (a study
    interrupted between two trials); with no plan known (`planned` None), the table's."""
    ended = int(table["state"].isin(ENDED).sum()) if len(table) else 0
    return max(0, (planned if planned is not None else len(table)) - ended)


def list_studies(root: Path) -> pd.DataFrame:
    """Every study under `root`: its name (its folder's), the name it was launched as if it
    differs, its folder, search, trials, planned trials, finished trials, metric and best value,
    bytes on disk. Each study is opened once (`view_study`)."""
    rows = []
    for name in study_names(root):
        folder = existing_study(root, name)
        view = view_study(folder)
        info, table = view.info, view.trials
        metric = info.metric
        done = int((table["state"] == "TERMINATED").sum()) if len(table) else 0
        best = (
            float(table[metric].max() if info.mode == "max" else table[metric].min())
            if (len(table) and metric in table)
            else float("nan")
        )
        rows.append(
            {
                "study": name,  # the folder's: a copied study is itself
                "launched_as": info.launched_as,
                "folder": uri_of(folder),
                "search": info.search,
                "trials": len(table),
                "planned": info.planned_trials,
                "finished": done,
                "metric": metric,
                "best": best,
                "disk_bytes": disk_usage(folder),
            }
        )
    return pd.DataFrame(rows)
