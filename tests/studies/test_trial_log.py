"""The study's own trial record: events in, states out; what the driver's callback writes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from mtl_tune.studies._trial_log import append_event, read_trials


def test_a_trial_is_in_the_state_of_its_last_event(tmp_path: Path) -> None:
    trial_dir = tmp_path / "tune" / "main" / "t1"
    append_event(tmp_path, "main", "t1", "created", {"lr": 1e-5}, str(trial_dir))
    append_event(tmp_path, "main", "t2", "created", {"lr": 1e-4})
    append_event(tmp_path, "main", "t1", "running", {"lr": 1e-5}, str(trial_dir))
    append_event(tmp_path, "main", "t1", "errored", {"lr": 1e-5}, str(trial_dir),
                 error_file=str(trial_dir / "error.txt"))
    trials = read_trials(tmp_path)
    # trials in order of creation, each in the state its last event left it
    assert [(t.trial_id, t.state) for t in trials.values()] == [("t1", "ERROR"), ("t2", "PENDING")]
    # paths inside the study folder are recorded relative to it, read back absolute
    assert '"path": "tune/main/t1"' in (tmp_path / "trials.jsonl").read_text()
    assert trials[("main", "t1")].error_file == str(trial_dir / "error.txt")


def test_the_record_survives_moving_the_study_folder(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    append_event(old, "main", "t1", "finished", {}, str(old / "tune" / "main" / "t1"))
    old.rename(new)
    # the trial's folder is found under the folder's new name
    assert read_trials(new)[("main", "t1")].path == str(new / "tune" / "main" / "t1")


def test_a_half_written_last_line_is_skipped(tmp_path: Path) -> None:
    append_event(tmp_path, "main", "t1", "finished", {"seed": 0})
    with open(tmp_path / "trials.jsonl", "a") as handle:
        handle.write('{"time": 1, "experiment": "main", "trial_id": "t1", "ev')
    # a driver killed while writing leaves a partial line: the earlier ones still count
    assert read_trials(tmp_path)[("main", "t1")].state == "TERMINATED"


def test_discarded_trials_are_not_listed(tmp_path: Path) -> None:
    append_event(tmp_path, "main", "ghost", "created", {})
    append_event(tmp_path, "main", "ghost", "discarded", {})
    # a trial that a resumed Tune forgot is not a trial of the study any more
    assert read_trials(tmp_path) == {}


def test_unknown_event_is_refused(tmp_path: Path) -> None:
    # the record only holds the events it knows how to read back
    with pytest.raises(ValueError, match=r"event must be one of .*'errored'.*but got 'suspended'"):
        append_event(tmp_path, "main", "t1", "suspended", {})


def _trial(trial_id: str, tmp_path: Path, done: bool = True, status: str = "RUNNING"):
    return SimpleNamespace(trial_id=trial_id, config={"seed": 1}, path=str(tmp_path / trial_id),
                           checkpoint=None, last_result={"done": done}, status=status,
                           run_metadata=SimpleNamespace(error_filename="error.txt"))


def test_callback_records_each_trial_event(tmp_path: Path) -> None:
    from mtl_tune.studies import TrialEvents

    events = TrialEvents(tmp_path, "main")
    events.setup()
    a, b, c = (_trial(t, tmp_path) for t in ("a", "b", "c"))
    b.last_result = {"done": False}
    events.on_step_begin(0, [a, b, c])
    for trial in (a, b, c):
        events.on_trial_start(1, [a, b, c], trial)
    # a scheduler pauses b (a seed waiting for its group), then it runs again
    b.status = "PAUSED"
    events.on_step_begin(1, [a, b, c])
    events.on_step_begin(2, [a, b, c])  # recorded once
    assert read_trials(tmp_path)[("main", "b")].state == "PAUSED"
    assert sum('"paused"' in line for line in (tmp_path / "trials.jsonl").open()) == 1
    b.status = "RUNNING"
    events.on_trial_start(3, [a, b, c], b)
    assert read_trials(tmp_path)[("main", "b")].state == "RUNNING"
    events.on_trial_complete(2, [a, b, c], a)
    events.on_trial_complete(2, [a, b, c], b)  # stopped early by the scheduler
    events.on_trial_error(2, [a, b, c], c)
    states = {t.trial_id: (t.event, t.state) for t in read_trials(tmp_path).values()}
    # finished, stopped early, errored: each recorded as such
    assert states == {"a": ("finished", "TERMINATED"), "b": ("stopped", "TERMINATED"),
                      "c": ("errored", "ERROR")}
    assert read_trials(tmp_path)[("main", "c")].error_file == str(tmp_path / "c" / "error.txt")

    resumed = TrialEvents(tmp_path, "main")
    resumed.setup()
    d = _trial("d", tmp_path)
    append_event(tmp_path, "main", "lost", "running", {})  # Tune had not saved it yet
    resumed.on_step_begin(0, [a, b, c, d])
    # on resume, known trials are not created again; the new one is; the forgotten one goes
    trials = read_trials(tmp_path)
    assert [t.trial_id for t in trials.values()] == ["a", "b", "c", "d"]
    assert trials[("main", "a")].state == "TERMINATED" and trials[("main", "d")].state == "PENDING"
