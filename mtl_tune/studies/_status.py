"""What a study holds right now: one row per trial, and the list of studies in a storage root."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from ray.tune import ExperimentAnalysis

from mtl_tune.studies._lock import Holder, live_holder
from mtl_tune.studies._storage import (
    META_FILE,
    TUNE_DIR,
    disk_usage,
    existing_study,
    human_bytes,
    read_meta,
    saved_statuses,
)

SHOWN_METRICS = ("overall", "mean_score", "sst_acc", "para_acc", "sts_corr")
UNFINISHED = ("RUNNING", "PENDING", "PAUSED")
INTERRUPTED = "INTERRUPTED"  # unfinished, and no driver holds the study


def trial_table(folder: Path) -> pd.DataFrame:
    """One row per trial of every experiment: state, searched config, epochs, best dev metrics.

    The best trial (by the study's metric, over its epochs) is marked in the `best` column.
    Unfinished trials of a study that no driver runs (killed, interrupted) are INTERRUPTED.
    """
    meta = read_meta(folder)
    metric, mode = meta["metric"], meta["mode"]
    analyses = []
    for experiment in _experiments(folder):
        try:
            analyses.append((experiment, ExperimentAnalysis(str(folder / TUNE_DIR / experiment))))
        except (ValueError, FileNotFoundError):
            continue  # an experiment that never saved its state: nothing to show yet
    # keys that vary over the whole study: a later stage shows the value an earlier one chose
    searched = _searched([t.config for _, analysis in analyses for t in analysis.trials])
    rows = []
    for experiment, analysis in analyses:
        frames = analysis.trial_dataframes
        # ExperimentAnalysis shows a live RUNNING trial as PENDING; the saved state file does not
        statuses = saved_statuses(folder / TUNE_DIR / experiment)
        for trial in analysis.trials:
            frame = frames.get(trial.trial_id)
            row: dict = {
                "experiment": experiment,
                "trial_id": trial.trial_id,
                "state": statuses.get(trial.trial_id, trial.status),
                "trainable": trial.config.get("trainable"),
                "seed": trial.config.get("seed"),
            }
            row.update({k: trial.config.get(k) for k in searched})
            row["epochs"] = 0
            if frame is not None and "training_iteration" in frame and len(frame):
                row["epochs"] = int(frame["training_iteration"].max())
            if frame is not None and metric in frame and frame[metric].notna().any():
                best = frame.loc[
                    frame[metric].idxmax() if mode == "max" else frame[metric].idxmin()
                ]
                row.update({k: float(best[k]) for k in SHOWN_METRICS if k in best})
            rows.append(row)
    table = pd.DataFrame(rows)
    if len(table) and live_holder(folder) is None:
        # Tune's saved state still says running, but no driver runs the study any more
        table["state"] = table["state"].replace(dict.fromkeys(UNFINISHED, INTERRUPTED))
    if len(table) and metric in table and table[metric].notna().any():
        scores = table[metric]
        table["best"] = ""
        table.loc[scores.idxmax() if mode == "max" else scores.idxmin(), "best"] = "*"
    return table


def _experiments(folder: Path) -> list[str]:
    """The study's experiment folders in run order (stage2 before stage10)."""
    names = [p.name for p in (folder / TUNE_DIR).glob("*") if p.is_dir()]
    return sorted(names, key=lambda n: (n.rstrip("0123456789"), len(n), n))


def _searched(configs: list[dict]) -> list[str]:
    keys = sorted({k for c in configs for k in c} - {"trainable", "seed"})
    return [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]


def study_status(root: Path, name: str) -> pd.DataFrame:
    return trial_table(existing_study(root, name))


def study_driver(root: Path, name: str) -> Holder | None:
    """The driver running the study now (pid, host, start), or None."""
    return live_holder(existing_study(root, name))


def list_studies(root: Path) -> pd.DataFrame:
    """Every study under `root`: search, trials, finished trials, best metric value, disk used."""
    rows = []
    for meta_file in sorted(root.glob(f"*/{META_FILE}")) if root.is_dir() else []:
        folder = meta_file.parent
        meta = read_meta(folder)
        table = trial_table(folder)
        metric = meta["metric"]
        done = int((table["state"] == "TERMINATED").sum()) if len(table) else 0
        best = (
            float(table[metric].max() if meta["mode"] == "max" else table[metric].min())
            if (len(table) and metric in table)
            else float("nan")
        )
        rows.append(
            {
                "study": meta["name"],
                "search": meta["search"],
                "trials": len(table),
                "finished": done,
                f"best {metric}": best,
                "disk": human_bytes(disk_usage(folder)),
            }
        )
    return pd.DataFrame(rows)
