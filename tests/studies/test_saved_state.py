"""Ray Tune's saved state as checkpoint retention reads it: each trial read when asked for, so a
pass over a few watched trials costs the same in a study of a thousand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.fs
import pytest

from mtl_tune.studies.store import _saved_state
from mtl_tune.studies.store._saved_state import SavedState, SavedTrial, parse_state, snapshot


def _trial(trial_id: str, status: str, checkpoint: str | None, **config: Any) -> list[str]:
    # Tune's layout: each trial and its metadata as JSON texts of their own
    return [json.dumps({"trial_id": trial_id, "status": status, "config": config,
                        "relative_logdir": f"trial_{trial_id}"}),
            json.dumps({"last_result": {"checkpoint_dir_name": checkpoint} if checkpoint else {}})]


def _state(pairs: list[list[str]]) -> str:
    return json.dumps({"trial_data": pairs, "runner_data": {}})


def test_a_lookup_in_a_state_of_a_thousand_trials_reads_that_trial_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = tmp_path / "main"
    experiment.mkdir()
    pairs = [_trial(f"t{i:04d}", "TERMINATED", f"checkpoint_{i % 3:06d}", lr=i * 1e-5)
             for i in range(1000)]
    (experiment / "experiment_state-2026-01-01_00-00-00.json").write_text(_state(pairs))
    read: list[str] = []
    parse = _saved_state._parse_trial

    def counted(trial_json: str, metadata_json: str) -> tuple[str, SavedTrial]:
        read.append(trial_json)
        return parse(trial_json, metadata_json)

    monkeypatch.setattr(_saved_state, "_parse_trial", counted)
    saved = snapshot(pyarrow.fs.LocalFileSystem(), str(experiment))
    assert saved is not None
    # retention asks for the trials it watches: their texts are parsed, no other
    assert saved.get("t0998") == SavedTrial("TERMINATED", "checkpoint_000002", {"lr": 998e-5},
                                            "trial_t0998")
    assert saved.get("t0007") == SavedTrial("TERMINATED", "checkpoint_000001")
    assert saved.get("t5000") is None  # not in the state: as a trial Tune has not saved
    assert len(read) == 2
    saved.get("t0998")
    assert len(read) == 2  # read once


def test_the_trials_read_one_by_one_are_those_of_the_whole_state() -> None:
    pairs = [
        _trial("a", "RUNNING", "checkpoint_000001"),
        # a config value under the key "trial_id" names another trial: never taken for it
        _trial("b", "TERMINATED", None, note={"trial_id": "a"}),
        [json.dumps({"trial_id": "c", "status": "PAUSED"}), "{cut"],  # does not parse
        _trial("d", "PENDING", None),
    ]
    state = SavedState(_state(pairs))
    assert state.get("a") == SavedTrial("RUNNING", "checkpoint_000001")
    assert state.get("b") == SavedTrial("TERMINATED", None, {"note": {"trial_id": "a"}})
    # a trial whose text does not parse is missing (retention deletes nothing of it); the
    # others read
    assert state.get("c") is None and state.get("d") == SavedTrial("PENDING", None)
    assert sorted(state) == ["a", "b", "d"] and len(state) == 3
    whole = [pair for pair in pairs if pair[0] != pairs[2][0]]
    assert state == parse_state(_state(whole))


@pytest.mark.parametrize("text", ["", "{", '{"trial_data": 3}', '{"trial_data": [[1, 2]]}',
                                  '{"runner_data": {}}'])
def test_a_state_that_is_not_whole_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a whole saved experiment state"):
        SavedState(text)
    with pytest.raises(ValueError, match="not a whole saved experiment state"):
        parse_state(text)


class _Trial:
    def __init__(self, number: int) -> None:
        self.trial_id, self.config, self.storage = f"t{number:04d}", {}, None


def test_retention_looks_at_each_trial_tune_adds_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # going over Tune's whole list of trials whenever it grew cost the square of the trials
    # over a study (a million looks at 1,000 trials)
    from mtl_tune.studies.driver import _retention_callback
    from mtl_tune.studies.driver._retention_callback import CheckpointRetention
    from mtl_tune.studies.spec import SEED_GROUP_KEY

    looked: list[int] = []
    members_of = _retention_callback.members_of
    monkeypatch.setattr(_retention_callback, "members_of",
                        lambda trials: looked.append(len(trials)) or members_of(trials))
    retention = CheckpointRetention("overall", "max", "best", every=1e9)
    retention.started = True
    population: list[_Trial] = []
    for number in range(300):
        population.append(_Trial(number))
        population[-1].config = {SEED_GROUP_KEY: f"g{number // 2}"}
        retention.on_step_end(0, population)
        retention.on_step_end(0, population)  # (a step that added none)
    assert sum(looked) == 300
    assert sorted(retention.grouped) == [t.trial_id for t in population]


def test_retention_reads_the_saved_state_once_per_fiftieth_of_the_trials_in_events(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # each pass lists and reads Tune's saved state, whose size grows with the trials: in a
    # study of 1,000 trials a pass comes every 20 checkpoint or end events, at 100 every 2
    from mtl_tune.studies.driver import _retention_callback
    from mtl_tune.studies.driver._retention_callback import CheckpointRetention

    looked: list[int] = []

    class Files:
        def __init__(self, storage: Any) -> None:
            pass

        def state_stamp(self) -> None:
            looked.append(1)  # no state yet: the pass ends here

    monkeypatch.setattr(_retention_callback, "TuneFiles", Files)
    for trials, every in ((1000, 20), (100, 2), (10, 1)):
        looked.clear()
        retention = CheckpointRetention("overall", "max", "best", every=0.0)
        retention.started = True
        population = [_Trial(i) for i in range(trials)]
        for event in range(60):
            retention.on_checkpoint(0, population, population[event % trials], None)
            retention.on_step_end(0, population)
        assert len(looked) == 60 // every, trials
        retention.on_trial_complete(0, population, population[0])
        retention.on_experiment_end(population)  # the last pass comes whatever the count
        assert len(looked) == 60 // every + 1


def test_retention_takes_a_new_copy_of_the_saved_state_once_per_tenth_of_the_trials_in_events(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tune saves its state every 10 s or so whatever the study's size, and a copy is read
    # whole: at 1,000 trials a pass takes the newest state once per 100 events (and prunes
    # against the one it has in between), at 100 once per 10; the experiment's end, always
    from mtl_tune.studies.driver import _retention_callback
    from mtl_tune.studies.driver._retention_callback import CheckpointRetention

    taken: list[str] = []
    pruned_against: list[str] = []

    class Files:
        saves = 0

        def __init__(self, storage: Any) -> None:
            pass

        def state_stamp(self) -> str:
            Files.saves += 1  # Tune saved again since each pass
            return f"save {Files.saves}"

        def saved_state(self, stamp: str) -> dict[str, Any]:
            taken.append(stamp)
            return {}

    monkeypatch.setattr(_retention_callback, "TuneFiles", Files)
    monkeypatch.setattr(_retention_callback, "group_retention",
                        lambda files, members, saved, metric, mode: (set(), {}))

    def prune(files: Any, trial_dir: str, saved: Any, *args: Any) -> bool:
        pruned_against.append(taken[-1])
        return False

    monkeypatch.setattr(Files, "prune", prune, raising=False)
    for trials, every in ((1000, 100), (100, 10), (10, 1)):
        taken.clear()
        retention = CheckpointRetention("overall", "max", "best", every=0.0)
        retention.started = True
        population = [_Trial(i) for i in range(trials)]
        for trial in population:
            trial.storage = type("Storage", (), {"trial_fs_path": trial.trial_id})()
        for event in range(300):
            retention.on_checkpoint(0, population, population[event % trials], None)
            retention.on_step_end(0, population)
        assert len(taken) == 300 // every, trials  # the first pass, then each `every` on
        # and a pass between two takes prunes against the copy taken last
        assert pruned_against[-1] == taken[-1]
        retention.on_experiment_end(population)  # the newest, whatever the count
        assert taken[-1] == f"save {Files.saves}" and pruned_against[-1] == taken[-1]


def test_a_pass_on_the_copy_it_pruned_with_looks_only_at_the_groups_with_new_events(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # at 1,000 trials a copy of Tune's state serves 100 events, and the trials awaiting one
    # stay watched meanwhile: each pass went over all of them again (72 groups a pass, 17 at
    # 100 trials), though nothing of theirs changed in the copy it had
    from mtl_tune.studies.driver import _retention_callback
    from mtl_tune.studies.driver._retention_callback import CheckpointRetention
    from mtl_tune.studies.spec import SEED_GROUP_KEY

    judged: list[list[str]] = []

    class Files:
        def __init__(self, storage: Any) -> None:
            pass

        def state_stamp(self) -> str:
            return "one save"  # Tune has not saved again

        def saved_state(self, stamp: str) -> dict[str, Any]:
            return {}

        def prune(self, trial_dir: str, *args: Any) -> bool:
            return False

    def group_retention(files: Any, members: list, saved: Any, metric: str,
                        mode: str) -> tuple[set[str], dict[str, Any]]:
        judged.append(sorted(t.trial_id for t in members))
        return {t.trial_id for t in members}, {}  # every group still waits for its seeds

    monkeypatch.setattr(_retention_callback, "TuneFiles", Files)
    monkeypatch.setattr(_retention_callback, "group_retention", group_retention)
    retention = CheckpointRetention("overall", "max", "best", every=0.0)
    retention.started = True
    population = [_Trial(i) for i in range(40)]
    for trial in population:
        trial.config = {SEED_GROUP_KEY: f"g{int(trial.trial_id[1:]) // 2}"}
        trial.storage = type("Storage", (), {"trial_fs_path": trial.trial_id})()
        retention.on_checkpoint(0, population, trial, None)
    retention.on_step_end(0, population)  # the first pass: a new copy, every group
    assert len(judged[-1]) == 40
    retention.on_checkpoint(0, population, population[7], None)
    retention.on_step_end(0, population)  # the same copy: t0007's group alone
    assert judged[-1] == ["t0006", "t0007"]
    assert sorted(retention.watched) == sorted(t.trial_id for t in population)  # all waiting
