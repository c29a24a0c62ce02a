"""The study's own trial record: events in, states out; what the driver's callback writes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from mtl_tune.studies.store._trial_log import append_event, read_trials, repair_record


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
                           storage=SimpleNamespace(trial_dir_name=trial_id), checkpoint=None,
                           last_result={"done": done}, status=status,
                           run_metadata=SimpleNamespace(error_filename="error.txt"))


def test_callback_records_each_trial_event(tmp_path: Path) -> None:
    from mtl_tune.studies.driver import TrialEvents

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


def test_a_trial_not_yet_placed_is_recorded_without_its_folder(
    tmp_path: Path, ray_local: None
) -> None:
    # a trial the scheduler holds back (or that waits for resources) has no folder yet, and
    # Tune raises for its path: the driver used to die on it after a resume
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    from mtl_tune.studies.driver import TrialEvents

    storage = StorageContext(storage_path=str(tmp_path / "tune"), experiment_dir_name="main")
    waiting = Trial("simulated", config={"seed": 1}, storage=storage, stub=True)
    events = TrialEvents(tmp_path, "main")
    events.setup()
    events.on_step_begin(0, [waiting])
    record = read_trials(tmp_path)[("main", waiting.trial_id)]
    assert (record.state, record.path) == ("PENDING", None)
    waiting.init_local_path()  # placed: the start records its folder
    events.on_trial_start(1, [waiting], waiting)
    record = read_trials(tmp_path)[("main", waiting.trial_id)]
    assert record.state == "RUNNING" and record.path == waiting.path


def _tune_state(folder: Path, trials: dict[str, str]) -> None:
    """Ray Tune's saved state of experiment `main`: trial id -> status (its JSON layout)."""
    experiment = folder / "tune" / "main"
    experiment.mkdir(parents=True, exist_ok=True)
    data = [[json.dumps({"trial_id": t, "status": s, "config": {"seed": i},
                         "relative_logdir": f"trial_{t}"}), "{}"]
            for i, (t, s) in enumerate(trials.items())]
    (experiment / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": data}))


def test_an_append_after_a_half_written_line_starts_a_new_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    append_event(tmp_path, "main", "t1", "created", {"seed": 0})
    with open(tmp_path / "trials.jsonl", "a") as handle:
        handle.write('{"time": 1, "experiment": "main", "trial_id": "t1", "ev')
    append_event(tmp_path, "main", "t2", "finished", {"seed": 1})
    trials = read_trials(tmp_path)
    # the event appended after the torn line is kept, not glued onto it and lost
    assert trials[("main", "t2")].state == "TERMINATED"
    # the torn line is reported by file and line
    assert f"{tmp_path / 'trials.jsonl'}:2: a torn line" in caplog.text


def test_a_cut_record_is_reconciled_with_tunes_saved_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for trial_id in ("a", "b", "c", "d"):
        append_event(tmp_path, "main", trial_id, "created", {"seed": 0})
        append_event(tmp_path, "main", trial_id, "running", {"seed": 0})
    append_event(tmp_path, "main", "a", "finished", {"seed": 0})
    append_event(tmp_path, "main", "b", "finished", {"seed": 0})
    record = tmp_path / "trials.jsonl"
    text = record.read_text()
    cut = text.index('"trial_id": "c"')  # cut in the middle of c's first line
    record.write_text(text[:cut])
    _tune_state(tmp_path, {"a": "TERMINATED", "b": "TERMINATED", "c": "TERMINATED",
                           "d": "RUNNING"})
    trials = read_trials(tmp_path)
    # no trial is hidden: the two the cut record lost come from Tune's saved state
    assert {k[1]: t.state for k, t in trials.items()} == {
        "a": "TERMINATED", "b": "TERMINATED", "c": "TERMINATED", "d": "RUNNING"}
    # their folders are the ones Tune named
    assert trials[("main", "c")].path == str(tmp_path / "tune" / "main" / "trial_c")
    # the torn line is reported with file:line
    assert f"{record}:5: a torn line" in caplog.text


def test_a_torn_record_is_repaired_whole_and_the_torn_file_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    append_event(tmp_path, "main", "a", "running", {"seed": 0})
    record = tmp_path / "trials.jsonl"
    torn = record.read_text() + '{"time": 2, "experim\n'
    record.write_text(torn)
    append_event(tmp_path, "main", "b", "created", {"seed": 1})
    _tune_state(tmp_path, {"a": "TERMINATED", "b": "PENDING"})
    before = read_trials(tmp_path)
    # a driver repairs a torn record before adding to it ...
    assert repair_record(tmp_path)
    # ... keeping the torn file as it was ...
    assert (tmp_path / "trials.jsonl.torn").read_text().startswith(torn)
    caplog.clear()
    after = read_trials(tmp_path)
    # ... into a record that reads whole, with the same trials and states
    assert "torn" not in caplog.text
    assert {k: t.state for k, t in after.items()} == {k: t.state for k, t in before.items()} == {
        ("main", "a"): "TERMINATED", ("main", "b"): "PENDING"}
    # a whole record needs no repair
    assert not repair_record(tmp_path)


def test_group_log_appends_after_a_torn_line(tmp_path: Path) -> None:
    from mtl_tune.studies.store._group_log import append_group_events, read_group_events

    path = tmp_path / "seed-groups.jsonl"
    append_group_events(path, [{"event": "result", "n": 1}])
    with open(path, "a") as handle:
        handle.write('{"event": "deci')
    append_group_events(path, [{"event": "decision", "n": 2}])
    # the decision logged after a torn line is read back
    assert [e["n"] for e in read_group_events(path)] == [1, 2]


def test_a_resumed_driver_records_trials_tune_restored_as_ended(tmp_path: Path) -> None:
    from mtl_tune.studies.driver import TrialEvents

    append_event(tmp_path, "main", "a", "running", {"seed": 1})  # its end lost with a cut
    events = TrialEvents(tmp_path, "main")
    events.setup()
    events.on_step_begin(0, [_trial("a", tmp_path, status="TERMINATED")])
    # the record follows Tune: the trial is finished, so resuming never waits for it again
    assert read_trials(tmp_path)[("main", "a")].state == "TERMINATED"


def test_an_emptied_record_is_read_from_tunes_saved_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    append_event(tmp_path, "main", "t1", "finished", {"seed": 0})
    append_event(tmp_path, "main", "t2", "finished", {"seed": 1})
    _tune_state(tmp_path, {"t1": "TERMINATED", "t2": "TERMINATED"})
    (tmp_path / "trials.jsonl").write_text("")  # `: > trials.jsonl`
    trials = read_trials(tmp_path)
    # no trial is hidden: both come back as Tune saved them, and the warning names the file
    assert {k: t.state for k, t in trials.items()} == {("main", "t1"): "TERMINATED",
                                                       ("main", "t2"): "TERMINATED"}
    assert f"{tmp_path / 'trials.jsonl'} holds no trial event (emptied?)" in caplog.text
    # a driver (resume) rewrites it whole from that state, the empty one kept beside it
    assert repair_record(tmp_path)
    assert {k: t.state for k, t in read_trials(tmp_path).items()} == {
        ("main", "t1"): "TERMINATED", ("main", "t2"): "TERMINATED"}
    assert (tmp_path / "trials.jsonl").read_text().count('"event": "finished"') == 2
    assert (tmp_path / "trials.jsonl.torn").read_text() == ""


def test_trials_only_their_folders_name_are_listed_from_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a record emptied and Tune's saved state gone: what remains is each trial's folder
    from mtl_tune.studies import TrialReport

    experiment = tmp_path / "tune" / "main"
    report = TrialReport(patience=0, stale_epochs=0, group_patience=0, min_delta=0.0,
                         epochs_planned=2, best_overall=0.5).metrics()
    rows = {"t1": [{"trial_id": "t1", "training_iteration": 1, **report},
                   {"trial_id": "t1", "training_iteration": 2, **report}],
            "t2": [{"trial_id": "t2", "training_iteration": 1, **report}]}
    for trial_id, lines in rows.items():
        (experiment / f"multitask_{trial_id}").mkdir(parents=True)
        (experiment / f"multitask_{trial_id}" / "result.json").write_text(
            "".join(json.dumps(r) + "\n" for r in lines))
        (experiment / f"multitask_{trial_id}" / "params.json").write_text(
            json.dumps({"seed": int(trial_id[1])}, indent=2))
    (experiment / "multitask_t3").mkdir()  # created, never reported: nothing names it
    (tmp_path / "trials.jsonl").write_text("")
    trials = read_trials(tmp_path)
    # both come back, with their configs: t1 ran its planned epochs (finished), t2 did not
    # (its driver stopped first: shown interrupted once no driver runs the study)
    assert {k: (t.state, t.config) for k, t in trials.items()} == {
        ("main", "t1"): ("TERMINATED", {"seed": 1}), ("main", "t2"): ("RUNNING", {"seed": 2})}
    assert (f"trial t2 is in neither {tmp_path / 'trials.jsonl'} nor Ray Tune's saved state: "
            f"listed from its folder {experiment / 'multitask_t2'}") in caplog.text
    # a driver writes them into the record
    assert repair_record(tmp_path)
    assert [(t.trial_id, t.event) for t in read_trials(tmp_path).values()] == [
        ("t1", "finished"), ("t2", "running")]


def test_a_step_looks_only_at_new_and_live_trials(tmp_path: Path) -> None:
    # looking at every trial of the study on every step made the record's cost per event grow
    # with the study
    from mtl_tune.studies.driver import TrialEvents

    events = TrialEvents(tmp_path, "main")
    events.setup()
    a, b = _trial("a", tmp_path), _trial("b", tmp_path)
    events.on_step_begin(0, [a, b])
    for trial in (a, b):
        events.on_trial_start(1, [a, b], trial)
    a.status = "TERMINATED"
    events.on_trial_complete(2, [a, b], a)
    events.on_step_begin(2, [a, b])

    class Ended:
        trial_id = "a"

        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"a step looked at an ended trial ({name})")

    c = _trial("c", tmp_path)
    b.status = "PAUSED"
    events.on_step_begin(3, [Ended(), b, c])
    trials = read_trials(tmp_path)
    assert trials[("main", "c")].state == "PENDING" and trials[("main", "b")].state == "PAUSED"
