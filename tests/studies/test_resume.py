"""Resume after SIGKILL: the CLI's driver is killed mid-study, `study resume` finishes the study.

The driver runs in a subprocess with its own RAY_TMPDIR, so every Ray process it starts can be
found (by that variable) and killed by process id, and none survives the test.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from ray.tune import ExperimentAnalysis

from mtl_tune.studies import load_results, open_storage
from mtl_tune.studies.spec import RAY_ID_ATTR, load_spec, trial_count
from mtl_tune.studies.store import read_meta, read_trials
from mtl_tune.studies.store._group_log import group_log_path, read_group_events
from tests.helpers import write_tiny_data
from tests.studies.conftest import (
    ASHA,
    NO_SCHEDULER,
    TPE_SPACE,
    launch_and_kill,
    ray_processes,
    resume_cli,
    tiny_fixed,
    wait_gone,
    write_spec,
)

TOP = """
name = "crash"
trainables = ["it7-cosrelu-tuned"]
search = "optuna"
num_samples = 6
max_concurrent = 2
optuna_seed = 1
"""
TABLES = TPE_SPACE + NO_SCHEDULER
OBJECTIVES = ("sst_acc", "para_acc", "sts_corr")
KEPT = ["training_iteration", "overall", "sst_acc", "para_acc", "sts_corr", "timestamp"]


def _saved_state(experiment: Path) -> dict[str, Any]:
    """Tune's saved view: trial id -> (status, last result, per-epoch metrics); {} if unreadable."""
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # trials that have not reported yet are expected here
    try:
        analysis = ExperimentAnalysis(str(experiment))
        frames = analysis.trial_dataframes
    except (ValueError, FileNotFoundError, OSError, pd.errors.EmptyDataError):
        return {}
    finally:
        quiet.setLevel(level)
    out = {}
    for trial in analysis.trials:
        frame = frames.get(trial.trial_id)
        kept = frame[KEPT].reset_index(drop=True) if frame is not None and len(frame) else None
        out[trial.trial_id] = (trial.status, dict(trial.last_result), kept)
    return out


def _mirrored(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        storage = open_storage(url)
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except Exception:  # not created yet, or locked while the driver writes
        return []


def _finished_state(folder: Path, polls: dict[str, float]) -> dict[str, Any] | None:
    """Tune's saved state once a trial is TERMINATED and, for up to 15 s more, once the kill
    would land in the pitfall window (a trial finished, by the study's record, while Tune's
    saved state still has it running or has not saved it at all: a mirror that recorded it on
    finishing held it then); None until then."""
    state = _saved_state(folder / "tune" / "main")
    done = {k for k, (status, _, _) in state.items() if status == "TERMINATED"}
    if not done:
        return None
    polls.setdefault("first_done", time.monotonic())
    try:
        ended = {tid for (_, tid), r in read_trials(folder).items() if r.state == "TERMINATED"}
    except (OSError, ValueError):  # being written
        ended = set()
    late = time.monotonic() - polls["first_done"] > 15
    return state if ended - done or late or len(done) >= 5 else None


# both in the chaos set (a minute and more each): the default run resumes a killed search in
# test_seed_groups_resume_after_sigkill_from_their_logged_decisions
@pytest.mark.chaos
@pytest.mark.parametrize("objectives", [(), OBJECTIVES], ids=["one-objective", "three-objectives"])
def test_resume_after_sigkill(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, ray_tmp: Path,
    objectives: tuple[str, ...],
) -> None:
    fixed = tiny_fixed(tiny_bert_dir, tiny_data_dir, epochs=2)
    top = TOP
    if objectives:  # a multi-objective study: TPE over three objectives
        top = TOP.replace('search = "optuna"', 'search = "optuna-mo"\nobjectives = '
                          + str(list(objectives)).replace("'", '"'))
    path = write_spec(tmp_path, top, fixed, TABLES)
    spec = load_spec(str(path))
    root = tmp_path / "studies"
    polls: dict[str, float] = {}
    before = launch_and_kill(path, tiny_data_dir, root, ray_tmp,
                              lambda: _finished_state(root / "crash", polls))
    finished = {k: v for k, v in before.items() if v[0] == "TERMINATED"}
    # the kill landed mid-study: some trials finished, not all
    assert finished and len(finished) < trial_count(spec), (len(finished), before.keys())

    # what a trial killed while staging a checkpoint leaves in its folder (see
    # test_interruptions): the resume removes it, for the finished trials too, which never run
    # again
    trial_dirs = [p for p in (root / "crash" / "tune" / "main").iterdir() if p.is_dir()]
    for trial_dir in trial_dirs:
        (trial_dir / ".staging" / "epoch2-x").mkdir(parents=True)
        (trial_dir / ".staging" / "epoch2-x" / "model.safetensors").write_bytes(b"cut")
    output = resume_cli("crash", root, ray_tmp, tmp_path / "resume.log")
    assert trial_dirs and not [p for p in trial_dirs if (p / ".staging").exists()]
    # the pitfall of a persistent OptunaSearch storage does not happen: the restored searcher never
    # reports a trial its storage already holds as finished (Ray 2.60 only logs that, as Optuna's
    # "Cannot tell a COMPLETE trial" or UpdateFinishedTrialError "... has already finished")
    for symptom in ("Cannot tell a", "already finished", "UpdateFinishedTrialError"):
        # none of the pitfall's messages appears in the resumed driver's output
        assert symptom not in output, symptom

    after = _saved_state(root / "crash" / "tune" / "main")
    # the study holds the spec's number of trials
    assert len(after) == trial_count(spec) == 6
    # every trial finished
    assert {status for status, _, _ in after.values()} == {"TERMINATED"}
    for trial_id, (_, result, frame) in finished.items():
        # a trial finished before the kill is still there ...
        assert trial_id in after
        _, result_after, frame_after = after[trial_id]
        # ... with the same last metric (it was not run again) ...
        assert result_after["overall"] == result["overall"]
        # ... and the same epoch count ...
        assert result_after["training_iteration"] == result["training_iteration"] == 2
        # ... and the same per-epoch results, timestamps included (no epoch re-ran)
        pd.testing.assert_frame_equal(frame_after, frame)

    trials = _mirrored(read_meta(root / "crash").optuna_storage, "crash")
    by_id = {t.user_attrs[RAY_ID_ATTR]: t for t in trials}
    # the Optuna mirror holds exactly one trial per finished Ray trial, none twice
    assert sorted(by_id) == sorted(after) and len(trials) == len(after)
    for trial_id, (_, _, frame) in after.items():
        # a trial that finished but that Tune's saved state still had running trains again
        # from the checkpoint that state names: an epoch it reported twice counts once
        frame = frame.drop_duplicates("training_iteration", keep="last")
        # each ran its planned epochs: COMPLETE ...
        assert by_id[trial_id].state == optuna.trial.TrialState.COMPLETE
        # ... with the value(s) of its best epoch, epochs before the kill included
        best = frame.loc[frame["overall"].idxmax()]
        if objectives:  # every objective present, at that epoch
            assert by_id[trial_id].values == [best[k] for k in objectives]
        else:
            assert by_id[trial_id].value == best["overall"]
        assert sorted(by_id[trial_id].intermediate_values) == sorted(frame["training_iteration"])
    # the resumed driver shut its Ray down: no process of this test survives
    assert not wait_gone(ray_processes(ray_tmp), timeout=20)


def _named_checkpoints_exist(experiment: Path) -> bool:
    """Whether every checkpoint that Tune's saved state names is on disk. Tune deletes a trial's
    older checkpoint when it registers a new one and saves the state that names the new one a
    moment later: a kill in between leaves the trial unable to resume (Tune's own window, which
    the README states, not the scheduler's)."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    try:
        trials = json.loads(states[-1].read_text())["trial_data"] if states else None
    except (OSError, ValueError):  # being written
        return False
    if trials is None:
        return False
    for _, metadata in trials:
        last = json.loads(metadata).get("last_result") or {}
        name = last.get("checkpoint_dir_name")
        trial_dirs = experiment.glob(f"*_{last.get('trial_id')}_*")
        if name and not any((d / name).is_dir() for d in trial_dirs):
            return False
    return True


def _decided(folder: Path) -> list[dict[str, Any]] | None:
    """The seed-group decisions logged so far, once there is one, the study is unfinished, Tune
    saved its state after the last logged event and every checkpoint that state names exists
    (a kill right at a logged result would otherwise hit Tune's checkpoint-deletion window)."""
    events = read_group_events(group_log_path(folder))
    decisions = [e for e in events if e["event"] == "decision"]
    ended = {e["trial"] for e in events if e["event"] == "ended"}
    experiment = folder / "tune" / "main"
    states = sorted(experiment.glob("experiment_state-*.json"))
    saved = bool(states) and states[-1].stat().st_mtime > events[-1]["time"] if events else False
    ready = decisions and len(ended) < 6 and saved and _named_checkpoints_exist(experiment)
    return decisions if ready else None


def test_seed_groups_resume_after_sigkill_from_their_logged_decisions(
    tmp_path: Path, tiny_bert_dir: Path, ray_tmp: Path,
) -> None:
    """3 configurations x 2 seeds under ASHA, killed after the first rung decision: the resumed
    driver replays the log (Tune does not restore schedulers), so no rung is judged twice, the
    seeds of a group still stop together, and the record holds one trial per group."""
    top = TOP.replace("num_samples = 6", "num_samples = 3\nseeds = 2")
    # epochs long enough that Tune saves its state between two logged events (48 rows were
    # once too few: the study ended before a kill point came)
    data = write_tiny_data(tmp_path / "data", rows=160)
    fixed = tiny_fixed(tiny_bert_dir, data, epochs=3)
    path = write_spec(tmp_path, top, fixed, TPE_SPACE + ASHA)
    root = tmp_path / "studies"
    before = launch_and_kill(path, data, root, ray_tmp, lambda: _decided(root / "crash"))
    resume_cli("crash", root, ray_tmp, tmp_path / "resume.log")

    events = read_group_events(group_log_path(root / "crash"))
    decisions = [e for e in events if e["event"] == "decision"]
    # the decisions made before the kill stand, first in the log, and none was made again
    assert decisions[: len(before)] == before
    points = [(e["group"], e["epoch"]) for e in decisions]
    assert len(points) == len(set(points))
    results = load_results(root / "crash")
    assert results["trial_id"].nunique() == 6
    for group, rows in results.groupby("config/seed_group"):
        last = rows.groupby("trial_id")["training_iteration"].max()
        # both seeds ran to the same epoch: the one their group's decisions allow
        assert len(last) == 2 and last.nunique() == 1, (group, last)
        stops = [e["epoch"] for e in decisions if e["group"] == group and e["decision"] == "stop"]
        assert last.iloc[0] == (stops[0] if stops else 3)
    trials = _mirrored(read_meta(root / "crash").optuna_storage, "crash")
    # one Optuna trial per group, none twice, each with both seeds' scores
    assert sorted(t.user_attrs[RAY_ID_ATTR] for t in trials) == sorted(
        results["config/seed_group"].unique())
    assert all(sorted(t.user_attrs["seed_scores"]) == ["0", "1"] for t in trials)
