"""A study's trial results as one tidy DataFrame: one row per trial and reported epoch.

Trials come from Ray Tune's `ExperimentAnalysis` (its experiment state: status, config,
resources, error file); the per-epoch rows from each trial's `result.json` (read here, so that a
half-written last line of a running trial is skipped instead of losing the whole trial). A trial
without any reported epoch (pending, or failed before its first epoch) still gets one row, with
empty metrics, so that every trial is visible.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.reports._study import StudyInfo, open_study
from mtl_tune.studies._storage import saved_statuses

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"
ID_COLUMNS = (
    "experiment",
    "trial_id",
    "trainable",
    "status",
    "error",
    "epoch",
    "seed",
    "gpus_per_trial",
    "cpus_per_trial",
    "trial_seconds",
    "trial_path",
    "checkpoint",
)
# Ray bookkeeping that says nothing about the trial
_DROPPED = ("config", "should_checkpoint", "experiment_tag")


def _flatten(mapping: dict[str, Any], prefix: str = "config/") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, str | int | float | bool) or value is None:
            out[f"{prefix}{key}"] = value
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def _read_rows(trial_dir: Path) -> list[dict[str, Any]]:
    """The reported results of one trial, oldest first; [] when it has reported none."""
    path = trial_dir / RESULT_FILE
    if path.is_file():
        rows = []
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                # a running trial may be halfway through writing its newest line
                log = logger.debug if number == len(lines) else logger.warning
                log("skipping unreadable line %s:%d", path, number)
        return rows
    if (trial_dir / PROGRESS_FILE).is_file():
        frame = pd.read_csv(trial_dir / PROGRESS_FILE, dtype={"trial_id": str})
        return frame.to_dict("records")
    return []


def _error_message(trial_dir: Path, filename: str | None, status: str) -> str | None:
    if status != "ERROR":
        return None
    path = trial_dir / filename if filename else None
    if path is None or not path.is_file():
        return "error (no error file was written)"
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else "error (empty error file)"


def _resources(trial: Any) -> tuple[float, float]:
    try:
        request = trial.placement_group_factory.required_resources
    except (AttributeError, TypeError):
        return 0.0, 0.0
    return float(request.get("GPU", 0.0)), float(request.get("CPU", 0.0))


def _trial_rows(trial: Any, experiment: str, status: str) -> list[dict[str, Any]]:
    trial_dir = Path(trial.path)
    config = dict(trial.config or {})
    gpus, cpus = _resources(trial)
    base = {
        "experiment": experiment,
        "trial_id": trial.trial_id,
        "trainable": str(config.get("trainable") or trial.trainable_name),
        "status": status,
        "error": _error_message(trial_dir, trial.run_metadata.error_filename, status),
        "seed": config.get("seed"),
        "gpus_per_trial": gpus,
        "cpus_per_trial": cpus,
        "trial_path": str(trial_dir),
        **_flatten(config),
    }
    reported = _read_rows(trial_dir)
    if not reported:
        return [{**base, "epoch": None, "trial_seconds": float("nan"), "checkpoint": None}]
    seconds = max(float(r.get("time_total_s") or 0.0) for r in reported)
    rows = []
    for result in reported:
        metrics = {
            k: v
            for k, v in result.items()
            if k not in _DROPPED and not k.startswith("config/") and k not in base
        }
        epoch = result.get("epoch", result.get("training_iteration"))
        name = result.get("checkpoint_dir_name")
        checkpoint = trial_dir / name if isinstance(name, str) and name else None
        rows.append(
            {
                **base,
                **metrics,
                "epoch": None if epoch is None else int(epoch),
                "trial_seconds": seconds,
                "checkpoint": str(checkpoint) if checkpoint and checkpoint.is_dir() else None,
            }
        )
    # a trial restored after a crash reports the epochs after its checkpoint again: keep the last
    return list({row["epoch"]: row for row in rows}.values())


def experiment_results(experiment_dir: Path | str, experiment: str | None = None) -> pd.DataFrame:
    """The tidy results of one Ray Tune experiment folder (finished or still running).

    Args:
        experiment_dir: A folder loadable with `ray.tune.ExperimentAnalysis`.
        experiment: The name put in the `experiment` column (default: the folder's name).

    Returns:
        One row per trial and reported epoch (see `load_results`).
    """
    from ray.tune import ExperimentAnalysis

    experiment_dir = Path(experiment_dir)
    statuses = saved_statuses(experiment_dir)
    # Ray warns about trials without result files (pending ones); rows are read here instead
    ray_logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = ray_logger.level
    ray_logger.setLevel(logging.ERROR)
    try:
        analysis = ExperimentAnalysis(str(experiment_dir))
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as err:
        raise MtlTuneError(
            f"cannot read the Ray Tune experiment {experiment_dir}: {err}; "
            "is it an experiment folder written by `mtl-tune study launch`?"
        ) from err
    finally:
        ray_logger.setLevel(level)
    name = experiment or experiment_dir.name
    rows = [
        row
        for trial in analysis.trials
        for row in _trial_rows(trial, name, statuses.get(trial.trial_id, str(trial.status)))
    ]
    return _tidy(pd.DataFrame(rows))


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    for column in ID_COLUMNS:
        if column not in frame:
            frame[column] = None
    for column in METRIC_KEYS:  # present even before any trial has reported
        if column not in frame:
            frame[column] = float("nan")
    frame["epoch"] = frame["epoch"].astype("Int64")
    stages = {name: i for i, name in enumerate(dict.fromkeys(frame["experiment"]))}
    order = frame["experiment"].map(stages).rename("_stage")
    frame = (
        frame.assign(_stage=order)
        .sort_values(["_stage", "trial_id", "epoch"], kind="stable")
        .drop(columns="_stage")
    )
    config = sorted(c for c in frame.columns if c.startswith("config/"))
    rest = [c for c in frame.columns if c not in ID_COLUMNS and c not in config]
    return frame[[*ID_COLUMNS, *config, *rest]].reset_index(drop=True)


def load_results(study_folder: Path | str) -> pd.DataFrame:
    """Loads every experiment (stage) of a finished or running study into one tidy DataFrame.

    Args:
        study_folder: The study folder (`<storage>/<study-name>`).

    Returns:
        One row per trial and reported epoch: `experiment` (stage), `trial_id`, `trainable`,
        `status` (TERMINATED, RUNNING, PAUSED, PENDING, ERROR), `error` (the last line of the
        trial's error file), `epoch`, `seed`, requested `gpus_per_trial`/`cpus_per_trial`,
        `trial_seconds` (the trial's wall time so far), `trial_path`, `checkpoint` (that epoch's
        checkpoint folder, None if not kept), the config as `config/<key>` columns, then every
        reported metric (sst_acc, ..., overall, mean_score, hostname, node_id, gpu_ids, device).
        A trial that reported nothing has one row with an empty epoch and empty metrics.

    Raises:
        MtlTuneError: The folder is not a study folder, or an experiment cannot be read.
    """
    return study_results(open_study(study_folder))


def study_results(info: StudyInfo) -> pd.DataFrame:
    """`load_results` of an already opened study; its metric must be a reported column."""
    frames = [experiment_results(path, name) for name, path in info.experiments.items()]
    results = _tidy(pd.concat(frames, ignore_index=True))
    if info.metric not in results:
        raise MtlTuneError(
            f"the study's metric {info.metric!r} (study.json) is not a reported metric; "
            f"use one of {list(METRIC_KEYS)}"
        )
    return results
