"""Trial results a killed driver had not copied to the study yet, recovered when it resumes
(the driver calls it, naming its Ray's temporary folder).

Ray Tune's driver writes each trial's `result.json` (and `params.json`, `params.pkl`) into a
staging folder of its Ray session
(`<Ray's temp>/session_*/artifacts/<time>/<experiment>/driver_artifacts/<trial folder>`) and
copies them into the study's storage when it saves its state. A driver killed between two saves
leaves the newest lines only there: a trial that ended meanwhile, or that its seed group
stopped, had no results in the study (`study status` showed it MISSING).

Before Tune restores an experiment, `recover_trial_logs` puts back what the restored
experiment will not report again: a trial that Tune's saved state has ended keeps every line
its staging folder holds; one that resumes keeps the lines up to the checkpoint it resumes from
(the epochs after it are run and reported again, and must not be listed twice); one the saved
state does not hold (Tune forgets it) gets nothing. A line is only ever added, never taken from
the study. Staging folders of another machine (a driver that ran elsewhere) are out of reach.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mtl_tune.studies.store._saved_state import SavedTrial, saved_trials, write_whole
from mtl_tune.studies.store._tune_files import upload_if_longer

logger = logging.getLogger(__name__)

RESULTS = "result.json"
PARAMS = ("params.json", "params.pkl")  # written once, at the trial's start
ENDED = ("TERMINATED", "ERROR")


def kept_lines(staged: str, saved: SavedTrial) -> list[str]:
    """The lines of a staged `result.json` that the restored trial will not report again."""
    lines = [line for line in staged.splitlines() if line.strip()]
    if saved.status in ENDED:
        return lines
    kept: list[str] = []
    for line in lines:
        if saved.checkpoint is None:
            break
        kept.append(line)
        try:
            if json.loads(line).get("checkpoint_dir_name") == saved.checkpoint:
                return kept
        except (ValueError, AttributeError):
            break
    return []  # its checkpoint is not among them: it starts again from scratch


def recover_trial_logs(experiment_uri: str, ray_temp: Path) -> int:
    """Puts back the trial results that Ray sessions under `ray_temp` staged for the experiment
    at `experiment_uri` (a folder or a store URI) and the study lacks; returns how many trials
    gained lines. A storage that cannot be read or written is logged and left as it is."""
    import pyarrow.fs

    try:
        fs, experiment = pyarrow.fs.FileSystem.from_uri(experiment_uri)
        saved = saved_trials(fs, experiment) or {}
    except (OSError, ValueError) as err:
        logger.warning("cannot read %s to recover trial results: %s", experiment_uri, err)
        return 0
    by_folder = {trial.folder: trial for trial in saved.values() if trial.folder}
    name = experiment.rstrip("/").rsplit("/", 1)[-1]
    recovered = 0
    # trial folder names hold the trial id and its creation time: another study's never match
    for staged in sorted(ray_temp.glob(f"session_*/artifacts/*/{name}/driver_artifacts/*")):
        trial = by_folder.get(staged.name)
        if trial is None or not (staged / RESULTS).is_file():
            continue
        try:
            recovered += _recover(fs, f"{experiment}/{staged.name}", staged, trial)
        except OSError as err:
            logger.warning("cannot recover the results of %s: %s", staged.name, err)
    if recovered:
        logger.warning("recovered the results of %d trial(s) of %s that the driver before this "
                       "one had not copied to the study (it was stopped first)", recovered,
                       experiment_uri)
    return recovered


def _recover(fs: Any, trial_dir: str, staged: Path, trial: SavedTrial) -> bool:
    kept = kept_lines(staged.joinpath(RESULTS).read_text(encoding="utf-8", errors="replace"),
                      trial)
    try:
        with fs.open_input_stream(f"{trial_dir}/{RESULTS}") as stream:
            held = bytes(stream.read()).decode("utf-8", errors="replace")
    except FileNotFoundError:
        held = ""
    held_lines = [line for line in held.splitlines() if line.strip()]
    if len(kept) <= len(held_lines) or kept[: len(held_lines)] != held_lines:
        return False  # the study holds as much, or a history of its own: left as it is
    for name in PARAMS:
        if (staged / name).is_file():
            upload_if_longer(staged / name, fs, f"{trial_dir}/{name}")
    write_whole(fs, f"{trial_dir}/{RESULTS}", "".join(line + "\n" for line in kept).encode())
    return True
