"""The study's own record of its trials: one JSON line per trial event, written by the driver.

`trials.jsonl` in the study folder gets a line when a trial is created, starts (or restarts
after a resume or a pause), is paused, finishes, is stopped early by the scheduler, or errors,
with the trial's experiment, id, config, folder, checkpoint and error file. A trial's state is
its last event, so the study, not Ray Tune's internal experiment state, says which trials are
done. A trial created after Tune's last saved state, before a driver died, is discarded on
resume (Tune's searcher suggests its configuration anew) and no longer listed. Only the driver
appends (`TrialEvents`, a Tune callback); readers import neither Ray nor torch.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.studies._json_lines import read_json_lines
from mtl_tune.studies._object_store import publish, remote
from mtl_tune.studies._storage import EVENTS_FILE

logger = logging.getLogger(__name__)

# event -> the trial state it leaves, in Ray Tune's words (which reports show)
STATES = {
    "created": "PENDING",
    "running": "RUNNING",
    "paused": "PAUSED",  # waiting, its checkpoint kept (a seed for the others of its group)
    "finished": "TERMINATED",
    "stopped": "TERMINATED",  # stopped early by the scheduler (ASHA): done, as far as it goes
    "errored": "ERROR",
    "discarded": "DISCARDED",  # created before a driver died, forgotten by the resumed Tune
}


@dataclass(frozen=True)
class TrialRecord:
    """A trial as its last event left it."""

    experiment: str
    trial_id: str
    state: str  # PENDING | RUNNING | TERMINATED | ERROR
    event: str  # the last event: created | running | finished | stopped | errored
    config: dict[str, Any]
    path: str | None  # the trial's folder
    checkpoint: str | None  # its latest kept checkpoint, where known
    error_file: str | None


def append_event(
    folder: Path,
    experiment: str,
    trial_id: str,
    event: str,
    config: dict[str, Any],
    path: str | None = None,
    checkpoint: str | None = None,
    error_file: str | None = None,
) -> None:
    """Appends one event line to the study's record (flushed, so a kill loses no earlier line).

    Paths inside the study folder (or its store) are recorded relative to it, so the folder
    can be moved; on a store the record is uploaded at once.
    """
    if event not in STATES:
        raise ValueError(f"event must be one of {tuple(STATES)}, but got {event!r}")
    folder = Path(folder)
    line = {
        "time": time.time(), "experiment": experiment, "trial_id": trial_id, "event": event,
        "config": config, "path": _relative(path, folder),
        "checkpoint": _relative(checkpoint, folder), "error_file": _relative(error_file, folder),
    }
    with open(folder / EVENTS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line, default=str) + "\n")
        handle.flush()
    try:
        publish(folder / EVENTS_FILE)
    except MtlTuneError as err:  # the whole record goes up again with the next event
        logger.warning("trial record not uploaded (again with the next event): %s", err)


def read_trials(folder: Path) -> dict[tuple[str, str], TrialRecord]:
    """(experiment, trial id) -> the trial as its last event left it, in order of creation.

    A half-written last line (a driver killed while writing it) is skipped.
    """
    path = Path(folder) / EVENTS_FILE
    trials: dict[tuple[str, str], TrialRecord] = {}
    for event in read_json_lines(path):
        try:
            key = (str(event["experiment"]), str(event["trial_id"]))
            state = STATES[event["event"]]
        except (KeyError, TypeError):
            logger.warning("skipping a line of %s that is not a trial event: %.200s", path, event)
            continue
        known = trials.get(key)
        trial_dir, checkpoint = (_absolute(event.get(k), folder) for k in ("path", "checkpoint"))
        trials[key] = TrialRecord(
            experiment=key[0], trial_id=key[1], state=state, event=event["event"],
            config=event.get("config") or (known.config if known else {}),
            path=trial_dir or (known.path if known else None),
            checkpoint=checkpoint or (known.checkpoint if known else None),
            error_file=_absolute(event.get("error_file"), folder),
        )
    return {key: record for key, record in trials.items() if record.state != "DISCARDED"}


# Tune's trial statuses -> the event that leaves a trial in that state
_EVENT_OF = {"PENDING": "created", "RUNNING": "running", "PAUSED": "paused",
             "TERMINATED": "finished", "ERROR": "errored"}


def record_from_tune(folder: Path, experiment_dirs: dict[str, Path]) -> None:
    """Writes the record of a study launched before mtl-tune kept one, once, from Ray Tune's
    last saved experiment state (plain JSON, read without Ray); does nothing if one exists."""
    if (Path(folder) / EVENTS_FILE).exists():
        return
    for experiment, experiment_dir in experiment_dirs.items():
        states = sorted(experiment_dir.glob("experiment_state-*.json"), key=lambda p: p.name)
        if not states:
            continue
        try:
            saved = json.loads(states[-1].read_text(encoding="utf-8"))
            trials = [json.loads(entry[0]) for entry in saved.get("trial_data", [])]
        except (json.JSONDecodeError, IndexError, TypeError) as err:
            logger.warning("cannot read Ray Tune's saved state %s: %s", states[-1], err)
            continue
        for trial in trials:
            path = experiment_dir / str(trial.get("relative_logdir", ""))
            event = _EVENT_OF.get(str(trial.get("status")), "created")
            error = path / "error.txt" if event == "errored" else None
            append_event(folder, experiment, str(trial["trial_id"]), event,
                         dict(trial.get("config") or {}), str(path),
                         error_file=None if error is None else str(error))


def _relative(path: str | None, folder: Path) -> str | None:
    if path is None:
        return None
    where = remote(folder)  # a study on a store: Tune names its files by their store paths
    if where is not None and path.startswith(where[1] + "/"):
        return path[len(where[1]) + 1:]
    try:
        return str(Path(path).resolve().relative_to(folder.resolve()))
    except ValueError:  # outside the study folder (another storage): kept as given
        return str(path)


def staged_path(folder: Path, path: str) -> Path:
    """The local path of a file Tune names by `path`: itself, or on a store its staged copy."""
    relative = _relative(path, folder)
    assert relative is not None
    return Path(folder) / relative


def _absolute(path: str | None, folder: Path) -> str | None:
    return None if path is None else str(Path(folder) / path)
