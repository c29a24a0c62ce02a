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

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.studies.spec import ITERATION, TrialReport
from mtl_tune.studies.store._json_lines import parse_json_lines
from mtl_tune.studies.store._object_store import remote
from mtl_tune.studies.store._saved_state import STATE_PATTERN, parse_state
from mtl_tune.studies.store._storage import EVENTS_FILE, TUNE_DIR
from mtl_tune.studies.store._study_store import StudyStore

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
    store = StudyStore.at(folder)
    try:
        store.append_lines(EVENTS_FILE, [json.dumps(line, default=str)])
    except MtlTuneError as err:  # the whole record goes up again with the next event
        logger.warning("trial record not uploaded (again with the next event): %s", err)


def read_trials(folder: Path) -> dict[tuple[str, str], TrialRecord]:
    """(experiment, trial id) -> the trial as its last event left it, in order of creation.

    A torn line (a driver killed while writing it, a record cut or overwritten) is skipped and
    reported with file:line, and the record is then reconciled with Ray Tune's last saved state
    of each experiment: a trial missing from it, or left behind at an earlier state, is listed
    as Tune saved it, so that no trial is hidden. An empty record (emptied by hand) is read from
    Tune's saved state the same way, with a warning naming it.
    """
    path = Path(folder) / EVENTS_FILE
    events, torn = parse_json_lines(path)
    trials: dict[tuple[str, str], TrialRecord] = {}
    for event in events:
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
    for number in torn:
        logger.warning("%s:%d: a torn line (not JSON) skipped; the trials are reconciled with "
                       "Ray Tune's saved state", path, number)
    if path.exists() and not events and not torn:
        logger.warning("%s holds no trial event (emptied?); the trials are read from Ray Tune's "
                       "saved state", path)
    if torn or not events:  # no record: a study launched before mtl-tune kept one, or emptied
        _reconcile(trials, Path(folder))
    return {key: record for key, record in trials.items() if record.state != "DISCARDED"}


# how far along a state is: the record keeps the later of its own and Tune's saved one
_PROGRESS = {"PENDING": 0, "RUNNING": 1, "PAUSED": 1, "TERMINATED": 2, "ERROR": 2}


def _reconcile(trials: dict[tuple[str, str], TrialRecord], folder: Path) -> None:
    for experiment_dir in sorted((folder / TUNE_DIR).glob("*/")):
        saved_trials = tune_saved_trials(experiment_dir)
        listed = {t for e, t in trials if e == experiment_dir.name}
        listed |= {t.trial_id for t in saved_trials}
        for found in folder_trials(experiment_dir, listed):
            trials[(experiment_dir.name, found.trial_id)] = found
            logger.warning("trial %s is in neither %s nor Ray Tune's saved state: listed from "
                           "its folder %s", found.trial_id, folder / EVENTS_FILE, found.path)
        for saved in saved_trials:
            key = (experiment_dir.name, saved.trial_id)
            known = trials.get(key)
            if known is not None and known.state == "DISCARDED":  # forgotten on purpose
                continue
            if known is None or _PROGRESS.get(known.state, 0) < _PROGRESS[saved.state]:
                trials[key] = dataclasses.replace(
                    saved, experiment=experiment_dir.name,
                    config=saved.config or (known.config if known else {}),
                    checkpoint=known.checkpoint if known else None)


def tune_saved_trials(experiment_dir: Path) -> list[TrialRecord]:
    """The trials of Ray Tune's newest readable saved state of one experiment (`parse_state`,
    without Ray), as records; [] when there is none."""
    states = sorted(experiment_dir.glob(STATE_PATTERN), key=lambda p: p.name)
    for state in reversed(states):  # a newest one cut by a full disk: the one before it
        try:
            saved = parse_state(state.read_text(encoding="utf-8"))
        except (ValueError, OSError) as err:
            logger.warning("cannot read Ray Tune's saved state %s: %s", state, err)
            continue
        out = []
        for trial_id, trial in saved.items():
            path = experiment_dir / trial.folder
            event = _EVENT_OF.get(trial.status, "created")
            error = path / "error.txt" if event == "errored" else None
            out.append(TrialRecord(
                experiment=experiment_dir.name, trial_id=trial_id, state=STATES[event],
                event=event, config=dict(trial.config), path=str(path), checkpoint=None,
                error_file=None if error is None else str(error)))
        return out
    return []


def folder_trials(experiment_dir: Path, known: set[str]) -> list[TrialRecord]:
    """The trials of an experiment folder that reported (their `result.json` names them) and
    are not in `known`, as records: finished when their last result says done or reached its
    planned epochs, else running (a driver stopped before they ended)."""
    out = []
    for trial_dir in sorted(p for p in experiment_dir.iterdir() if p.is_dir()):
        rows = [r for r in parse_json_lines(trial_dir / "result.json")[0]
                if isinstance(r, dict) and r.get("trial_id")]
        if not rows or str(rows[-1]["trial_id"]) in known:
            continue
        last = rows[-1]
        config = _params(trial_dir) or last.get("config")
        try:
            planned: int | None = TrialReport.from_result(last).epochs_planned
        except MtlTuneError:  # reported by another version: only Tune's `done` tells
            planned = None
        ended = bool(last.get("done")) or (
            planned is not None and int(last.get(ITERATION, 0)) >= planned)
        event = "finished" if ended else "running"
        out.append(TrialRecord(
            experiment=experiment_dir.name, trial_id=str(last["trial_id"]), state=STATES[event],
            event=event, config=dict(config or {}), path=str(trial_dir), checkpoint=None,
            error_file=None))
    return out


def _params(trial_dir: Path) -> dict[str, Any] | None:
    """The config Tune wrote in the trial's `params.json`; None if unreadable."""
    try:
        params = json.loads((trial_dir / "params.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return params if isinstance(params, dict) else None


def repair_record(folder: Path) -> bool:
    """Rewrites a torn record whole: its readable events, then one event per trial whose state
    `read_trials` took from Tune's saved state. The torn file is kept beside it
    (`trials.jsonl.torn`). A study launched before mtl-tune kept a record gets one, from Tune's
    saved state; so does an empty one. Returns whether it was rewritten. Only a driver calls
    this."""
    path = Path(folder) / EVENTS_FILE
    if not path.exists():
        _record_from_tune(folder)
        return False
    events, torn = parse_json_lines(path)
    if not torn and events:
        return False
    trials = read_trials(folder)
    kept = [e for e in events if isinstance(e, dict)]
    last = {(str(e.get("experiment")), str(e.get("trial_id"))): e.get("event") for e in kept}
    lines = [json.dumps(e, default=str) for e in kept]
    for key, record in trials.items():
        same = last.get(key) == record.event or (
            record.event == "finished" and last.get(key) == "stopped")
        if not same:
            lines.append(json.dumps({
                "time": time.time(), "experiment": key[0], "trial_id": key[1],
                "event": record.event, "config": record.config,
                "path": _relative(record.path, folder), "checkpoint": None,
                "error_file": _relative(record.error_file, folder)}, default=str))
    backup = path.with_name(EVENTS_FILE + ".torn")
    store = StudyStore.at(folder)
    store.write_text(backup.name, path.read_text(encoding="utf-8", errors="replace"))
    store.write_text(EVENTS_FILE, "".join(line + "\n" for line in lines))
    logger.warning("%s was %s: rewritten from its readable lines and Ray Tune's saved state "
                   "(the old file is kept as %s)", path, "torn" if torn else "empty", backup.name)
    return True


# Tune's trial statuses -> the event that leaves a trial in that state
_EVENT_OF = {"PENDING": "created", "RUNNING": "running", "PAUSED": "paused",
             "TERMINATED": "finished", "ERROR": "errored"}


def _record_from_tune(folder: Path) -> None:
    """Writes the record of a study launched before mtl-tune kept one from Ray Tune's last
    saved state of each experiment (and the trial folders it does not list)."""
    for trial in read_trials(folder).values():
        append_event(folder, trial.experiment, trial.trial_id, trial.event, trial.config,
                     trial.path, error_file=trial.error_file)


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
