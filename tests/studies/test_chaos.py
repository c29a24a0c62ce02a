"""A chaos test: a small seed-group study under ASHA, SIGKILLed at 5 random instants and once
interrupted with SIGINT, resumed after each, ends as its uninterrupted twin: the same trials,
epochs, decisions and scores. About 3 minutes, so not in the default run: `pytest -m chaos`."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mtl_tune.studies import load_results
from mtl_tune.studies.store._group_log import group_log_path, read_group_events
from tests.helpers import write_tiny_data
from tests.studies.conftest import (
    ASHA,
    CLI,
    TPE_SPACE,
    kill_driver,
    ray_processes,
    resume_cli,
    tiny_fixed,
    wait_gone,
    write_spec,
)

TOP = """
name = "chaos"
trainables = ["it7-cosrelu-tuned"]
search = "optuna"
num_samples = 3
seeds = 2
max_concurrent = 2
optuna_seed = 5
"""
KEYS = ["config/lr", "config/sts_head", "config/seed"]  # a trial, across runs


def _driver(args: list[str], ray_tmp: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "TUNE_GLOBAL_CHECKPOINT_S": "0.5"}
    env.pop("RAY_ADDRESS", None)
    with open(log, "ab") as out:
        return subprocess.Popen([*CLI, *args, "--address", "local"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _outcome(folder: Path) -> tuple[pd.DataFrame, list[tuple[Any, ...]]]:
    """Each trial's epochs and scores, keyed by config and seed; and each group decision, keyed
    by the group's config."""
    results = load_results(folder)
    rows = results[[*KEYS, "status", "epoch", "overall", "sst_acc", "para_acc", "sts_corr"]]
    rows = rows.assign(**{"config/lr": rows["config/lr"].round(12)})
    rows = rows.sort_values([*KEYS, "epoch"]).reset_index(drop=True)
    config_of = {g: (round(r["config/lr"], 12), r["config/sts_head"]) for g, r in
                 results.drop_duplicates("config/seed_group").set_index("config/seed_group")
                 .iterrows()}
    decisions = sorted(
        (*config_of[e["group"]], e["epoch"], e["decision"], round(e["mean"], 6))
        for e in read_group_events(group_log_path(folder)) if e["event"] == "decision")
    return rows, decisions


@pytest.mark.chaos
def test_a_study_killed_again_and_again_ends_as_its_uninterrupted_twin(
    tmp_path: Path, tiny_bert_dir: Path, ray_tmp: Path
) -> None:
    data = write_tiny_data(tmp_path / "data", rows=96)
    # four epochs, and each driver interrupted within 1.5 s of its first: six drivers never
    # finish the study between them, so every signal finds one still training (with three
    # epochs and 3 s, the sixth once found the study already done)
    fixed = tiny_fixed(tiny_bert_dir, data, epochs=4)
    path = write_spec(tmp_path, TOP, fixed, TPE_SPACE + ASHA)
    twin_root, root = tmp_path / "twin", tmp_path / "chaos"
    launch = ["study", "launch", str(path), "--data-dir", str(data), "--storage"]
    twin = _driver([*launch, str(twin_root)], ray_tmp, tmp_path / "twin.log")
    assert twin.wait(480) == 0, (tmp_path / "twin.log").read_text()[-3000:]

    chance = random.Random(21)
    log = tmp_path / "chaos.log"
    signals = [signal.SIGKILL] * 5 + [signal.SIGINT]
    chance.shuffle(signals)
    codes = []
    for number, sig in enumerate(signals):
        args = [*launch, str(root)] if number == 0 else [
            "study", "resume", "chaos", "--storage", str(root)]
        seen = log.stat().st_size if log.is_file() else 0
        driver = _driver(args, ray_tmp, log)
        try:
            # the instant: at random within 1.5 s of this driver's first epoch (so that each
            # driver makes progress: Ray's start alone takes seconds)
            _wait_for_an_epoch(driver, log, seen, number)
            time.sleep(chance.uniform(0.0, 1.5))
            # the signal must find the driver still running the study, or this run proves
            # nothing about an interruption
            assert driver.poll() is None, (
                f"driver {number} ended (exit {driver.returncode}) before its {sig.name}: "
                f"{log.read_bytes()[seen:].decode(errors='replace')[-2000:]}")
            if sig == signal.SIGINT:
                os.kill(driver.pid, signal.SIGINT)  # Ctrl-C: the driver stops its trials
                codes.append(driver.wait(120))
            else:
                os.killpg(driver.pid, signal.SIGKILL)
                codes.append(driver.wait(30))
        finally:
            kill_driver(driver)
        # whatever the signal, no process of that driver's Ray is left for the next one
        assert not wait_gone(ray_processes(ray_tmp), timeout=30)
    # each driver was interrupted as planned: killed (-9), or stopped by Ctrl-C with exit 130
    assert codes == [130 if s == signal.SIGINT else -signal.SIGKILL for s in signals]
    resume_cli("chaos", root, ray_tmp, tmp_path / "final.log")

    twin_rows, twin_decisions = _outcome(twin_root / "chaos")
    rows, decisions = _outcome(root / "chaos")
    # the same trials (configuration and seed), each finished, with the same epochs ...
    assert set(rows["status"]) == {"TERMINATED"}, rows
    pd.testing.assert_frame_equal(rows[[*KEYS, "status", "epoch"]],
                                  twin_rows[[*KEYS, "status", "epoch"]])
    # ... the same scores at every epoch (within 1e-6: seeded CPU training) ...
    pd.testing.assert_frame_equal(rows, twin_rows, check_exact=False, atol=1e-6, rtol=0)
    # ... and the same seed-group decisions, each made once
    assert decisions == twin_decisions and len(set(decisions)) == len(decisions)


def _wait_for_an_epoch(driver: subprocess.Popen, log: Path, seen: int, number: int) -> None:
    """Returns once the driver has logged an epoch past byte `seen` of its log."""
    deadline = time.monotonic() + 240
    while " epoch " not in log.read_bytes()[seen:].decode(errors="replace"):
        assert driver.poll() is None, (
            f"driver {number} ended (exit {driver.returncode}) before its first epoch: "
            f"{log.read_bytes()[seen:].decode(errors='replace')[-2000:]}")
        assert time.monotonic() < deadline, f"driver {number} logged no epoch in 240 s"
        time.sleep(0.05)
