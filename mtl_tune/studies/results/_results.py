"""A study's results as one tidy DataFrame: one row per trial and reported epoch.

Trials (state, config, folder, error file) come from the study's own record (`_trial_log`); the
per-epoch rows from each trial's `result.json`, Ray Tune's documented per-trial output, read
here without importing Ray (a half-written last line of a running trial is skipped instead of
losing the whole trial). A trial without any reported epoch (pending, or failed before its
first epoch) still gets one row, with empty metrics, so that every trial is visible.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.studies.results._folder import StudyInfo, open_study
from mtl_tune.studies.results._selection import INTERRUPTED, UNFINISHED
from mtl_tune.studies.spec import CURVE_KEY, ITERATION
from mtl_tune.studies.store import (
    META_FILE,
    TrialRecord,
    live_holder,
    read_json_lines,
    read_meta,
    read_trials,
)

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"  # Ray Tune's per-trial outputs
PARAMS_FILE = "params.json"
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
# Ray bookkeeping that says nothing about the trial, and the steps' loss curve (TensorBoard's)
_DROPPED = ("config", "should_checkpoint", "experiment_tag", CURVE_KEY)


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


def read_result_rows(trial_dir: Path) -> list[dict[str, Any]]:
    """The reported results of one trial, oldest first; [] when it has reported none."""
    return [row for row in read_json_lines(trial_dir / RESULT_FILE) if isinstance(row, dict)]


def _error_message(record: TrialRecord) -> str | None:
    if record.state != "ERROR":
        return None
    path = Path(record.error_file) if record.error_file else None
    if path is None or not path.is_file():
        return "error (no error file was written)"
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else "error (empty error file)"


def _trial_rows(record: TrialRecord, resources: dict[str, float],
                digested: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The trial's rows; `digested`: its results as the study's digest holds them, read instead
    of its folder (which a reader of the study's files alone has not brought here: its error
    file is named, not read, and its checkpoints are not known)."""
    trial_dir = Path(record.path) if record.path else None
    config = dict(record.config)
    if not config and trial_dir is not None and (trial_dir / PARAMS_FILE).is_file():
        try:
            config = json.loads((trial_dir / PARAMS_FILE).read_text(encoding="utf-8"))
        except (ValueError, OSError) as err:  # e.g. zero bytes, left by a full disk
            logger.warning("%s: unreadable (%s); the trial's config is unknown",
                           trial_dir / PARAMS_FILE, err)
    error = _error_message(record)
    if digested is not None and record.state == "ERROR" and record.error_file:
        error = f"error (its message: {record.error_file})"
    base = {
        "experiment": record.experiment,
        "trial_id": record.trial_id,
        "trainable": str(config.get("trainable") or "multitask"),
        "status": record.state,
        "error": error,
        "seed": config.get("seed"),
        "gpus_per_trial": float(resources.get("gpu", 0.0)),
        "cpus_per_trial": float(resources.get("cpu", 1.0)),
        "trial_path": None if trial_dir is None else str(trial_dir),
        **_flatten(config),
    }
    if digested is not None:
        reported = digested
    else:
        reported = read_result_rows(trial_dir) if trial_dir is not None else []
    if not reported and record.state == "TERMINATED":  # never "done" without a result
        base["status"] = "MISSING"
        if digested is not None:
            where = "the study's results digest holds no epoch of it"
        elif trial_dir is None or not trial_dir.is_dir():
            where = f"its folder {trial_dir} is missing"
        else:
            where = f"{trial_dir / RESULT_FILE} holds no epoch"
        logger.warning("trial %s is recorded finished, but %s: it is shown as missing",
                       record.trial_id, where)
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
        epoch = result.get("epoch", result.get(ITERATION))
        name = result.get("checkpoint_dir_name")
        checkpoint = (trial_dir / name if trial_dir is not None and digested is None
                      and isinstance(name, str) and name else None)  # digested: not known
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


def experiment_results(
    folder: Path | str, experiment: str,
    records: Mapping[tuple[str, str], TrialRecord] | None = None,
    resources: Mapping[str, float] | None = None,
    digested: Mapping[str, list[dict[str, Any]]] | None = None,
) -> pd.DataFrame:
    """The tidy results of one experiment (stage) of a study folder (finished or running).

    Args:
        folder: The study folder.
        experiment: The experiment's name.
        records, resources: The trial record and the per-trial resources of study.json, when
            the study was opened already (`StudyInfo`); else read here.
        digested: Trial id -> its results, from the study's results digest (`read_digest`),
            read instead of the trials' folders; then no checkpoint is known.

    Returns:
        One row per trial and reported epoch (see `load_results`).
    """
    folder = Path(folder)
    if resources is None:
        resources = dict(read_meta(folder).resources) if (folder / META_FILE).is_file() else {}
    records = read_trials(folder) if records is None else records
    rows = [
        row
        for record in records.values()
        if record.experiment == experiment
        for row in _trial_rows(record, dict(resources), None if digested is None
                               else digested.get(record.trial_id, []))
    ]
    return _tidy(pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(ID_COLUMNS)))


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
        `status` (TERMINATED, RUNNING, PAUSED, PENDING, ERROR, MISSING; INTERRUPTED for
        one left unfinished by a driver that no longer runs), `error` (the last line of the
        trial's error file), `epoch`, `seed`, requested `gpus_per_trial`/`cpus_per_trial`,
        `trial_seconds` (the trial's wall time so far), `trial_path`, `checkpoint` (that epoch's
        checkpoint folder, None if not kept), the config as `config/<key>` columns, then every
        reported metric (sst_acc, ..., overall, mean_score, hostname, node_id, gpu_ids, device).
        A trial that reported nothing has one row with an empty epoch and empty metrics.

    Raises:
        MtlTuneError: The folder is not a study folder, or an experiment cannot be read.
    """
    return study_results(open_study(study_folder))


def study_results(
    info: StudyInfo, running: bool | None = None,
    digest: Mapping[str, Mapping[str, list[dict[str, Any]]]] | None = None,
) -> pd.DataFrame:
    """`load_results` of an already opened study; its metric must be a reported column.

    The trials a driver left unfinished (running, paused or pending when it was killed or
    interrupted) are INTERRUPTED once no driver runs the study (`running`: whether one does,
    if known; else its lock is read): every report and `study status` name them alike.
    `digest`: the study's results digest (`read_digest`), read instead of the trials' folders
    (it must hold every experiment)."""
    frames = [experiment_results(info.folder, name, info.records, info.resources,
                                 None if digest is None else digest[name])
              for name in info.experiments]
    if not frames:  # launched, no trial created yet
        frames = [experiment_results(info.folder, "", {}, {})]
    results = _tidy(pd.concat(frames, ignore_index=True))
    if running is None:
        running = live_holder(info.folder) is not None
    if not running:
        results["status"] = results["status"].replace(dict.fromkeys(UNFINISHED, INTERRUPTED))
    if info.metric not in results:
        raise MtlTuneError(
            f"the study's metric {info.metric!r} (study.json) is not a reported metric; "
            f"use one of {list(METRIC_KEYS)}"
        )
    return results
