"""Checkpoint retention owned by the driver: what may be deleted against Tune's saved state, and
the last whole saved state put back when the newest was cut."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.fs
import pytest

from mtl_tune.studies.store._retention import prune_trial, to_delete
from mtl_tune.studies.store._saved_state import (
    SNAPSHOT_DIR,
    SavedTrial,
    parse_state,
    repair_saved_state,
    snapshot,
    state_stamp,
)

NAMES = [f"checkpoint_{i:06d}" for i in range(5)]
SCORES = dict(zip(NAMES, [0.3, 0.5, 0.4, 0.5, 0.2], strict=True))  # best: 000001 (the earliest)


@pytest.mark.parametrize(
    ("saved", "keep", "gone"),
    [
        # not in Tune's saved state yet: nothing goes
        (None, "best", []),
        # running, its last result at 000004: the best and everything from the one before it
        # on stay (Tune may not have registered 000004 when it saved)
        (SavedTrial("RUNNING", NAMES[4]), "best", [NAMES[0], NAMES[2]]),
        # paused or errored trials may resume too
        (SavedTrial("PAUSED", NAMES[3]), "best", [NAMES[0]]),
        (SavedTrial("ERROR", NAMES[1]), "best", []),
        # saved before its first checkpoint was registered: all stay
        (SavedTrial("RUNNING", None), "best", []),
        # ended: its best only, its best and its last, or every one
        (SavedTrial("TERMINATED", NAMES[4]), "best", [NAMES[0], NAMES[2], NAMES[3], NAMES[4]]),
        (SavedTrial("TERMINATED", NAMES[4]), "best+last", [NAMES[0], NAMES[2], NAMES[3]]),
        (SavedTrial("TERMINATED", NAMES[4]), "all", []),
    ],
)
def test_what_may_go(saved: SavedTrial | None, keep: str, gone: list[str]) -> None:
    # the checkpoints deleted are exactly those no restore and no report can need
    assert to_delete(NAMES, SCORES, "max", saved, keep)[0] == gone


def test_an_ended_trial_is_settled_only_once_its_results_are_in() -> None:
    ended = SavedTrial("TERMINATED", NAMES[4])
    # its last results not read yet (an object store's result.json lags): the unscored ones
    # stay, any of them may be best, and the trial is not settled
    gone, settled = to_delete(NAMES, {k: SCORES[k] for k in NAMES[:3]}, "max", ended, "best")
    assert gone == [NAMES[0], NAMES[2]] and not settled
    # with every result in, it is settled
    assert to_delete(NAMES, SCORES, "max", ended, "best")[1]
    # a live trial is never settled: a newer saved state lets more go
    assert not to_delete(NAMES, SCORES, "max", SavedTrial("RUNNING", NAMES[4]), "best")[1]


def test_min_mode_and_orphans() -> None:
    scores = {NAMES[0]: 0.3, NAMES[2]: 0.1, NAMES[3]: 0.4}  # 000001: no result (an orphan)
    gone, _ = to_delete(NAMES[:4], scores, "min", SavedTrial("TERMINATED", NAMES[3]), "best")
    # under "min" the lowest score is best; an orphan older than a scored one goes
    assert gone == [NAMES[0], NAMES[1], NAMES[3]]


def test_bad_keep_is_refused() -> None:
    # the rule and the value
    with pytest.raises(ValueError, match=r"one of \('best', 'best\+last', 'all'\), but got 'some'"):
        to_delete(NAMES, SCORES, "max", None, "some")


def _state(trials: dict[str, tuple[str, str | None]]) -> str:
    data = [[json.dumps({"trial_id": t, "status": s}),
             json.dumps({"last_result": {"checkpoint_dir_name": c} if c else {}})]
            for t, (s, c) in trials.items()]
    return json.dumps({"trial_data": data})


def _trial(folder: Path, scores: dict[str, float]) -> Path:
    for name in scores:
        (folder / name).mkdir(parents=True)
        (folder / name / "model.safetensors").write_bytes(b"w" * 10)
    rows = [json.dumps({"checkpoint_dir_name": n, "overall": v}) for n, v in scores.items()]
    (folder / "result.json").write_text("\n".join(rows) + "\n")
    return folder


def test_prune_against_the_saved_state_on_disk(tmp_path: Path) -> None:
    fs = pyarrow.fs.LocalFileSystem()
    experiment = tmp_path / "main"
    trial = _trial(experiment / "t1", dict(list(SCORES.items())[:4]))
    (experiment / "experiment_state-2026-01-01_00-00-00.json").write_text(
        _state({"t1": ("RUNNING", NAMES[3])}))
    (experiment / "search_gen_state-2026-01-01_00-00-00.json").write_text("searcher")
    assert state_stamp(fs, str(experiment)) is not None
    saved = snapshot(fs, str(experiment))
    assert saved == {"t1": SavedTrial("RUNNING", NAMES[3])}
    # Tune's driver files are copied whole, as one set, before anything is deleted
    manifest = json.loads((experiment / SNAPSHOT_DIR / "manifest.json").read_text())
    copied = experiment / SNAPSHOT_DIR / manifest["set"]
    assert (copied / "experiment_state-2026-01-01_00-00-00.json").read_text() == _state(
        {"t1": ("RUNNING", NAMES[3])})
    assert (copied / "search_gen_state-2026-01-01_00-00-00.json").read_text() == "searcher"
    settled = prune_trial(fs, str(trial), saved["t1"], "overall", "max", "best")
    # the superseded checkpoint is gone; the best, the last result's checkpoint and the one
    # before it stay
    assert sorted(p.name for p in trial.glob("checkpoint_*")) == NAMES[1:4]
    assert not settled


def test_a_cut_saved_state_is_replaced_by_its_last_whole_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fs = pyarrow.fs.LocalFileSystem()
    experiment = tmp_path / "main"
    experiment.mkdir()
    whole = _state({"t1": ("RUNNING", NAMES[1])})
    state = experiment / "experiment_state-2026-01-02_00-00-00.json"
    searcher = experiment / "basic-variant-state-2026-01-02_00-00-00.json"
    state.write_text(whole)
    searcher.write_text("generated 2")
    assert snapshot(fs, str(experiment)) is not None
    # later: the searcher moved on, and a full disk cut the experiment state; a newer run's
    # state file exists too, cut
    searcher.write_text("generated 4")
    state.write_text(whole[: len(whole) // 2])
    newer = experiment / "experiment_state-2026-01-03_00-00-00.json"
    newer.write_text("{")
    with caplog.at_level(logging.WARNING):
        # before a restore, the last whole set is put back, searcher state included
        assert repair_saved_state(str(experiment)) == state.name
    assert parse_state(state.read_text()) == {"t1": SavedTrial("RUNNING", NAMES[1])}
    assert searcher.read_text() == "generated 2" and not newer.exists()
    # the files it replaced are kept beside
    assert (experiment / (state.name + ".torn")).read_text() == whole[: len(whole) // 2]
    assert (experiment / (newer.name + ".torn")).read_text() == "{"
    assert "was not readable" in caplog.text
    # a whole state needs nothing
    assert repair_saved_state(str(experiment)) is None


def test_a_cut_state_without_a_whole_copy_is_left_as_it_is(tmp_path: Path) -> None:
    experiment = tmp_path / "main"
    experiment.mkdir()
    (experiment / "experiment_state-2026-01-02_00-00-00.json").write_text("{")
    # nothing to put back: nothing is moved
    assert repair_saved_state(str(experiment)) is None
    assert [p.name for p in experiment.iterdir()] == ["experiment_state-2026-01-02_00-00-00.json"]


class _ReadCounting:
    """A pyarrow file system that records the paths read through it."""

    def __init__(self, fs: pyarrow.fs.FileSystem) -> None:
        self.fs, self.read = fs, []

    def open_input_stream(self, path: str) -> object:
        self.read.append(Path(path).name)
        return self.fs.open_input_stream(path)

    def __getattr__(self, name: str) -> object:
        return getattr(self.fs, name)


def test_the_copy_of_the_saved_state_reads_only_the_experiment_state(tmp_path: Path) -> None:
    # on a store the copy is the store's: the driver reads back the state it parses, never the
    # searcher's state nor tuner.pkl, which grow with the trials
    experiment = tmp_path / "main"
    experiment.mkdir()
    state = experiment / "experiment_state-2026-01-02_00-00-00.json"
    state.write_text(_state({"t1": ("RUNNING", NAMES[1])}))
    (experiment / "searcher-state-2026-01-02_00-00-00.pkl").write_bytes(b"s" * 100_000)
    (experiment / "tuner.pkl").write_bytes(b"t" * 100_000)
    fs = _ReadCounting(pyarrow.fs.LocalFileSystem())
    assert snapshot(fs, str(experiment)) == {"t1": SavedTrial("RUNNING", NAMES[1])}
    assert fs.read == [state.name]
    manifest = json.loads((experiment / SNAPSHOT_DIR / "manifest.json").read_text())
    copied = experiment / SNAPSHOT_DIR / manifest["set"]
    assert (copied / "tuner.pkl").read_bytes() == b"t" * 100_000


def test_a_new_set_replaces_the_last_one_only_when_whole(tmp_path: Path) -> None:
    fs = pyarrow.fs.LocalFileSystem()
    experiment = tmp_path / "main"
    experiment.mkdir()
    state = experiment / "experiment_state-2026-01-02_00-00-00.json"
    searcher = experiment / "search_gen_state-2026-01-02_00-00-00.json"
    state.write_text(_state({"t1": ("RUNNING", NAMES[1])}))
    searcher.write_text("generated 2")
    assert snapshot(fs, str(experiment)) is not None
    state.write_text(_state({"t1": ("RUNNING", NAMES[2])}))
    searcher.write_text("generated 3")
    assert snapshot(fs, str(experiment)) == {"t1": SavedTrial("RUNNING", NAMES[2])}
    # the earlier set is gone: one set and its manifest
    sets = sorted(p.name for p in (experiment / SNAPSHOT_DIR).iterdir())
    assert len(sets) == 2 and "manifest.json" in sets
    # a cut state is copied nowhere and the last whole set stays named
    whole = state.read_text()
    state.write_text(whole[:20])
    searcher.write_text("generated 4")
    assert snapshot(fs, str(experiment)) is None
    assert sorted(p.name for p in (experiment / SNAPSHOT_DIR).iterdir()) == sets
    assert repair_saved_state(str(experiment)) == state.name
    assert state.read_text() == whole and searcher.read_text() == "generated 3"


def _seed(root: Path, trial_id: str, overall: list[float]) -> object:
    """A seed of group "g": its trial folder with one result row and checkpoint per epoch."""
    from types import SimpleNamespace

    folder = root / trial_id
    folder.mkdir()
    rows = [{"training_iteration": e + 1, "overall": v, "checkpoint_dir_name": NAMES[e]}
            for e, v in enumerate(overall)]
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return SimpleNamespace(trial_id=trial_id, config={"seed_group": "g"},
                           storage=SimpleNamespace(trial_fs_path=str(folder)))


def test_a_seed_keeps_its_checkpoint_at_its_groups_best_epoch(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from mtl_tune.studies.driver._group_retention import group_retention
    from mtl_tune.studies.store import TuneFiles

    fs = TuneFiles(SimpleNamespace(storage_filesystem=pyarrow.fs.LocalFileSystem(),
                                   experiment_fs_path=str(tmp_path)))
    # seed a is best alone at epoch 2, but the group's mean is best at epoch 1 (0.5 vs 0.45)
    seeds = [_seed(tmp_path, "a", [0.5, 0.6]), _seed(tmp_path, "b", [0.5, 0.3])]
    ended = {"a": SavedTrial("TERMINATED", NAMES[1]), "b": SavedTrial("TERMINATED", NAMES[1])}
    waiting, keep = group_retention(fs, seeds, ended, "overall", "max")
    # both ended: each keeps its checkpoint of epoch 1, the group's best
    assert waiting == set() and keep == {"a": {NAMES[0]}, "b": {NAMES[0]}}
    # ... which plain retention (its own best only) would have deleted for seed a
    scores = {NAMES[0]: 0.5, NAMES[1]: 0.6}
    assert to_delete(NAMES[:2], scores, "max", ended["a"], "best") == ([NAMES[0]], True)
    assert to_delete(NAMES[:2], scores, "max", ended["a"], "best", keep["a"]) == ([], True)
    # while a seed still runs, the group's best epoch may move: every seed keeps all
    running = {**ended, "b": SavedTrial("RUNNING", NAMES[1])}
    assert group_retention(fs, seeds, running, "overall", "max") == ({"a", "b"}, {})
    # a seed that errored is left out of the mean, as the Optuna record leaves it out
    errored = {**ended, "b": SavedTrial("ERROR", NAMES[1])}
    assert group_retention(fs, seeds, errored, "overall", "max") == (set(), {"a": {NAMES[1]}})


def test_a_retention_pass_reads_only_the_trials_with_something_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a pass used to read every ended group's results and list every trial again: a cost per
    # pass that grew with the study
    from types import SimpleNamespace

    from mtl_tune.studies.driver._retention_callback import CheckpointRetention
    from mtl_tune.studies.store import TuneFiles

    storage = {"storage_filesystem": pyarrow.fs.LocalFileSystem(),
               "experiment_fs_path": str(tmp_path)}
    trials = []
    for trial_id, group in (("a1", {"seed_group": "g"}), ("a2", {"seed_group": "g"}),
                            ("b1", {}), ("b2", {})):
        folder = _trial(tmp_path / trial_id, dict(list(SCORES.items())[:2]))
        trials.append(SimpleNamespace(trial_id=trial_id, config=group,
                                      storage=SimpleNamespace(**storage,
                                                              trial_fs_path=str(folder))))
    read: list[str] = []
    result_rows, prune = TuneFiles.result_rows, TuneFiles.prune
    monkeypatch.setattr(TuneFiles, "result_rows", lambda self, d: read.append(Path(d).name)
                        or result_rows(self, d))
    monkeypatch.setattr(TuneFiles, "prune", lambda self, d, *a: read.append(Path(d).name)
                        or prune(self, d, *a))

    def saved(when: str, states: dict[str, str]) -> None:
        for old in tmp_path.glob("experiment_state-*.json"):
            old.unlink()
        (tmp_path / f"experiment_state-{when}.json").write_text(
            _state({t: (s, NAMES[1]) for t, s in states.items()}))

    retention = CheckpointRetention("overall", "max", "best")
    retention.on_step_begin(0, trials)
    saved("2026-01-01_00-00-00", {"a1": "TERMINATED", "a2": "TERMINATED", "b1": "RUNNING",
                                  "b2": "RUNNING"})
    retention.on_experiment_end(trials)  # a pass over everything it watches
    # the seed group ended: settled and never read again; b1 and b2 run
    assert sorted(retention.watched) == ["b1", "b2"] and {"a1", "a2"} <= set(read)
    read.clear()
    # a later save, a checkpoint of b1 only: b1 is pruned again, b2 (nothing new) is not
    saved("2026-01-01_00-01-00", {"a1": "TERMINATED", "a2": "TERMINATED", "b1": "RUNNING",
                                  "b2": "RUNNING"})
    retention.on_checkpoint(1, trials, trials[2], None)
    retention.prune()
    assert read == ["b1"]

    # a driver resumed after a kill passes over the trials an earlier one settled (marked in
    # one folder, read in one listing): at a thousand ended trials its first pass used to list
    # and read each of them again, for minutes on an object store
    resumed = CheckpointRetention("overall", "max", "best")
    read.clear()
    resumed.on_step_begin(0, trials)
    assert sorted(resumed.watched) == ["b1", "b2"]
    resumed.on_experiment_end(trials)
    assert "a1" not in read and "a2" not in read and sorted(read) == ["b1", "b2"]


class _ListingCounting(_ReadCounting):
    """A pyarrow file system that also counts the folder listings made through it."""

    def __init__(self, fs: pyarrow.fs.FileSystem) -> None:
        super().__init__(fs)
        self.listings = 0

    def get_file_info(self, what: object) -> object:
        self.listings += isinstance(what, pyarrow.fs.FileSelector)
        return self.fs.get_file_info(what)


@pytest.mark.process
def test_an_ended_trial_on_a_store_is_pruned_and_settled_with_one_listing(s3_bucket: str) -> None:
    # on an object store a listing is a request that costs with the bucket's size; pruning and
    # settling a trial used to list its folder twice
    from types import SimpleNamespace

    from mtl_tune.studies.store import TuneFiles

    store, base = pyarrow.fs.FileSystem.from_uri(s3_bucket)
    trial = f"{base}/tune/main/t1"
    for name in NAMES[:3]:
        for file, data in (("model.safetensors", b"w" * 10), ("optimizer.pt", b"o" * 20)):
            with store.open_output_stream(f"{trial}/{name}/{file}") as stream:
                stream.write(data)
    rows = [json.dumps({"checkpoint_dir_name": n, "overall": SCORES[n]}) for n in NAMES[:3]]
    with store.open_output_stream(f"{trial}/result.json") as stream:
        stream.write(("\n".join(rows) + "\n").encode())
    fs = _ListingCounting(store)
    files = TuneFiles(SimpleNamespace(storage_filesystem=fs,
                                      experiment_fs_path=f"{base}/tune/main"))
    assert files.prune(trial, SavedTrial("TERMINATED", NAMES[2]), "overall", "max", "best")
    files.settle(trial, "t1")
    assert fs.listings == 1
    # the best checkpoint is left, with its weights only, and the trial is marked settled
    left = store.get_file_info(pyarrow.fs.FileSelector(trial, recursive=True))
    assert sorted(i.path.removeprefix(trial + "/") for i in left
                  if i.type == pyarrow.fs.FileType.File) == [
        f"{NAMES[1]}/model.safetensors", "result.json"]
    assert files.settled() == {"t1"}
