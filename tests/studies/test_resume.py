"""Resume after SIGKILL: the CLI's driver is killed mid-study, `study resume` finishes the study.

The driver runs in a subprocess with its own RAY_TMPDIR, so every Ray process it starts can be
found (by that variable) and killed by process id, and none survives the test.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import psutil
import pytest
from ray.tune import ExperimentAnalysis

from mtl_tune.studies import load_spec, open_storage, read_meta, trial_count
from mtl_tune.studies._optuna_mirror import RAY_ID_ATTR
from tests.studies.conftest import (
    CLI,
    NO_SCHEDULER,
    TPE_SPACE,
    ray_processes,
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


def _wait_for_finished_trial(
    driver: subprocess.Popen, folder: Path, timeout: float
) -> dict[str, Any]:
    """Polls the saved state until a trial is TERMINATED; then, for up to 15 s more, tries to
    land in the pitfall window (a trial already in the Optuna mirror while Tune's saved state
    still has it running). Returns the saved state to compare with after the resume."""
    deadline = time.monotonic() + timeout
    first_done: float | None = None
    while time.monotonic() < deadline:
        # the driver is still running (it did not fail before the kill)
        assert driver.poll() is None, "the driver ended before a trial finished"
        state = _saved_state(folder / "tune" / "main")
        done = {k for k, (status, _, _) in state.items() if status == "TERMINATED"}
        if done:
            first_done = first_done or time.monotonic()
            url = read_meta(folder)["optuna_storage"]
            mirrored = {t.user_attrs.get(RAY_ID_ATTR) for t in _mirrored(url, "crash")}
            if mirrored - done or time.monotonic() - first_done > 15 or len(done) >= 5:
                return state
        time.sleep(0.2)
    raise AssertionError(f"no trial finished within {timeout} s")


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
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    common = ["--storage", str(root), "--address", "local"]
    launch_args = ["study", "launch", str(path), "--data-dir", str(tiny_data_dir), *common]
    with open(tmp_path / "launch.log", "wb") as log:
        driver = subprocess.Popen(
            CLI + launch_args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        before = _wait_for_finished_trial(driver, root / "crash", timeout=300)
        # every process below the driver: its Ray (whose agents outlive the driver's process
        # group, by Ray's design) and the reaper that stops them when the driver dies
        started = psutil.Process(driver.pid).children(recursive=True) + ray_processes(ray_tmp)
        assert any("Agent" in p.name() for p in started)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(30)
    # the killed driver's reaper stopped its Ray, then itself: no process of it is left
    assert not wait_gone(started, timeout=20), [p.name() for p in started if p.is_running()]
    assert not wait_gone(ray_processes(ray_tmp), timeout=20)
    finished = {k: v for k, v in before.items() if v[0] == "TERMINATED"}
    # the kill landed mid-study: some trials finished, not all
    assert finished and len(finished) < trial_count(spec), (len(finished), before.keys())

    resume = subprocess.run(
        [*CLI, "study", "resume", "crash", *common],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=480,
    )
    output = resume.stdout.decode(errors="replace")
    (tmp_path / "resume.log").write_text(output)
    # the resumed study runs to the end
    assert resume.returncode == 0, output[-4000:]
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

    trials = _mirrored(read_meta(root / "crash")["optuna_storage"], "crash")
    by_id = {t.user_attrs[RAY_ID_ATTR]: t for t in trials}
    # the Optuna mirror holds exactly one trial per finished Ray trial, none twice
    assert sorted(by_id) == sorted(after) and len(trials) == len(after)
    for trial_id, (_, _, frame) in after.items():
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
