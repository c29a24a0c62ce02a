"""The test table: each dev-table row's best checkpoint evaluated on the test split.

Where the test files are labeled the row holds the test metrics; either way the course's
leaderboard files (`sst-test-output.csv`, ...) of each row are written to a folder of their own,
and where the files carry no labels the row says so and points at them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.platform.predict import predict_data

logger = logging.getLogger(__name__)

PREDICTIONS_DIR = "test-predictions"


def _row(dev_row: Any, data_dir: Path, folder: Path, batch_size: int, device: str) -> dict:
    row: dict[str, Any] = {
        "iteration": dev_row.iteration,
        "trial_id": dev_row.best_trial_id,
        "epoch": dev_row.best_epoch,
        "checkpoint": dev_row.best_checkpoint,
        "labeled": False,
        **dict.fromkeys(METRIC_KEYS, np.nan),
        "predictions": None,
        "note": "",
    }
    if not isinstance(dev_row.best_checkpoint, str):
        row["note"] = "no checkpoint (no finished or running trial with a kept checkpoint)"
        return row
    out = folder / PREDICTIONS_DIR / dev_row.iteration
    try:
        result = predict_data(
            Path(dev_row.best_checkpoint), data_dir, "test", out, batch_size, device
        )
    except MtlTuneError as err:
        row["note"] = f"not evaluated: {err}"
        return row
    row["predictions"] = out.relative_to(folder).as_posix()
    row.update(result.task_scores)
    if result.metrics is not None:
        row.update({k: result.metrics[k] for k in METRIC_KEYS})
        row["labeled"] = True
    else:
        unlabeled = [t for t, p in result.predictions.items() if p.labels is None]
        where = row["predictions"]
        row["note"] = f"unlabeled ({', '.join(unlabeled)}): leaderboard files in {where}/"
    if result.missing:
        row["note"] = (row["note"] + "; " if row["note"] else "") + (
            f"no test file for {', '.join(sorted(result.missing))}"
        )
    return row


def evaluate_test_split(
    dev: pd.DataFrame,
    data_dir: Path,
    folder: Path,
    metric: str = "overall",
    batch_size: int = 128,
    device: str = "auto",
) -> pd.DataFrame:
    """Evaluates each dev row's best checkpoint on `data_dir`'s test files.

    Args:
        dev: The dev table (`dev_table`), whose `best_checkpoint` column names the checkpoints.
        data_dir: The data folder holding `<prefix>-test.csv` (or `-test-student.csv`) files.
        folder: The report folder; leaderboard files go to `test-predictions/<iteration>/`.
        metric: The metric whose change against the previous / first row is given.
        batch_size: Evaluation batch size.
        device: "auto", "cpu" or "cuda".

    Returns:
        One row per dev row: `iteration`, `trial_id`, `epoch`, `checkpoint`, `labeled` (all three
        tasks scored), the metrics (nan where unlabeled), `delta_prev`, `delta_base`,
        `predictions` (the leaderboard files' folder, relative to `folder`) and `note`.
    """
    rows = [_row(r, data_dir, folder, batch_size, device) for r in dev.itertuples(index=False)]
    table = pd.DataFrame(rows)
    values = table[metric].astype(float)
    at = table.columns.get_loc("predictions")
    table.insert(at, "delta_prev", values - values.shift(1))
    table.insert(at + 1, "delta_base", values - (values.iloc[0] if len(values) else np.nan))
    table["epoch"] = table["epoch"].astype("Int64")
    return table
