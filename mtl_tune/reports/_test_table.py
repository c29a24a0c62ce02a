"""The test table: each dev-table row's best checkpoint evaluated on the test split.

Where the test files are labeled the row holds the test metrics; either way the course's
leaderboard files (`sst-test-output.csv`, ...) of each row are written to a folder of their own,
and where the files carry no labels the row says so and points at them.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.platform.predict import predict_data
from mtl_tune.studies import cache_scores, fetch_checkpoint, read_cached_scores, score_cache_key

logger = logging.getLogger(__name__)

PREDICTIONS_DIR = "test-predictions"


def _scored(
    checkpoint: Path, data_dir: Path, out: Path, batch_size: int, device: str
) -> dict[str, Any]:
    """Scores a checkpoint on the test split (on a store: its weights downloaded once); its
    course files go to `out`."""
    result = predict_data(fetch_checkpoint(checkpoint), data_dir, "test", out, batch_size, device)
    return {
        "task_scores": result.task_scores,
        "metrics": result.metrics,
        "unlabeled": [t for t, p in result.predictions.items() if p.labels is None],
        "missing": sorted(result.missing),
        "files": [path.name for path in result.files.values()],  # scores.json included
    }


def _entry(
    dev_row: Any, data_dir: Path, out: Path, batch_size: int, device: str,
    study: Path | None,
) -> tuple[dict[str, Any], bool]:
    """The checkpoint's test scores and whether they came from the study's cache."""
    checkpoint = Path(dev_row.best_checkpoint)
    if study is None or pd.isna(dev_row.best_epoch):
        return _scored(checkpoint, data_dir, out, batch_size, device), False
    key = score_cache_key(dev_row.best_trial_id, int(dev_row.best_epoch), data_dir)
    cached = read_cached_scores(study, key)
    if cached is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name in cached.entry.get("files", []):
            shutil.copyfile(cached.folder / name, out / name)
        return cached.entry, True
    entry = _scored(checkpoint, data_dir, out, batch_size, device)
    try:
        cache_scores(study, key, entry, [out / name for name in entry["files"]])
    except MtlTuneError as err:  # a read-only study still gets its report
        logger.warning("test scores not cached: %s", err)
    return entry, False


def _row(
    dev_row: Any, data_dir: Path, folder: Path, batch_size: int, device: str,
    study: Path | None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "iteration": dev_row.iteration,
        "trial_id": dev_row.best_trial_id,
        "epoch": dev_row.best_epoch,
        "checkpoint": dev_row.best_checkpoint,
        "labeled": False,
        **dict.fromkeys(METRIC_KEYS, np.nan),
        "predictions": None,
        "cached": False,
        "note": "",
    }
    if not isinstance(dev_row.best_checkpoint, str):
        row["note"] = "no checkpoint (no finished or running trial with a kept checkpoint)"
        return row
    out = folder / PREDICTIONS_DIR / dev_row.iteration
    try:
        entry, row["cached"] = _entry(dev_row, data_dir, out, batch_size, device, study)
    except MtlTuneError as err:
        row["note"] = f"not evaluated: {err}"
        return row
    row["predictions"] = out.relative_to(folder).as_posix()
    row.update(entry["task_scores"])
    if entry["metrics"] is not None:
        row.update({k: entry["metrics"][k] for k in METRIC_KEYS})
        row["labeled"] = True
    else:
        where = row["predictions"]
        row["note"] = f"unlabeled ({', '.join(entry['unlabeled'])}): leaderboard files in {where}/"
    if entry["missing"]:
        row["note"] = (row["note"] + "; " if row["note"] else "") + (
            f"no test file for {', '.join(entry['missing'])}"
        )
    return row


def evaluate_test_split(
    dev: pd.DataFrame,
    data_dir: Path,
    folder: Path,
    metric: str = "overall",
    batch_size: int = 128,
    device: str = "auto",
    study: Path | None = None,
) -> pd.DataFrame:
    """Evaluates each dev row's best checkpoint on `data_dir`'s test files.

    Args:
        dev: The dev table (`dev_table`), whose `best_checkpoint` column names the checkpoints.
        data_dir: The data folder holding `<prefix>-test.csv` (or `-test-student.csv`) files.
        folder: The report folder; leaderboard files go to `test-predictions/<iteration>/`.
        metric: The metric whose change against the previous / first row is given.
        batch_size: Evaluation batch size.
        device: "auto", "cpu" or "cuda".
        study: The study folder whose score cache is read and filled (None: score afresh,
            cache nothing).

    Returns:
        One row per dev row: `iteration`, `trial_id`, `epoch`, `checkpoint`, `labeled` (all three
        tasks scored), the metrics (nan where unlabeled), `delta_prev`, `delta_base`,
        `predictions` (the leaderboard files' folder, relative to `folder`), `cached` (read
        from the study's cache), `note`, and the dev row's `device_hours` and `device`.
    """
    rows = [
        _row(r, data_dir, folder, batch_size, device, study)
        for r in tqdm(list(dev.itertuples(index=False)), desc="test split", unit="checkpoint",
                      disable=None, leave=False)
    ]
    table = pd.DataFrame(rows)
    values = table[metric].astype(float)
    at = table.columns.get_loc("predictions")
    table.insert(at, "delta_prev", values - values.shift(1))
    table.insert(at + 1, "delta_base", values - (values.iloc[0] if len(values) else np.nan))
    table["epoch"] = table["epoch"].astype("Int64")
    if "device_hours" in dev:  # the training behind the row (scoring the test split: seconds)
        table["device_hours"], table["device"] = list(dev["device_hours"]), list(dev["device"])
    return table
