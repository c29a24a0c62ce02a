"""A Ctrl-C that falls between two trials of a launch: the study is judged against its plan
(exit 130, the planned trials counted, the resume command), not against the trials Tune had
created. Its own file, so that pytest-xdist can run it beside the other driver tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mtl_tune.studies.store import read_meta
from tests.studies.test_driver import _cli, _env, _spec

# The driver's CLI with a test-only hook in the grid's trial generator: as Tune hands it the
# second trial's end, the driver gets SIGINT (Ctrl-C). Tune ends its loop after that step, before
# the next step asks for the third trial: the signal lands in the gap between two trials every
# time, not by a race
SIGINT_BETWEEN_TRIALS = """
import os, signal
from mtl_tune.studies.driver._relocated_search import RelocatedGrid
ended, plain_complete = [], RelocatedGrid.on_trial_complete
def on_trial_complete(self, trial_id, result=None, error=False):
    ended.append(trial_id)
    plain_complete(self, trial_id, result=result, error=error)
    if len(ended) == 2:
        os.kill(os.getpid(), signal.SIGINT)
RelocatedGrid.on_trial_complete = on_trial_complete
from mtl_tune.cli import main
main()
"""


def test_ctrl_c_between_two_trials_is_judged_against_the_plan(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    path = _spec(tmp_path, tiny_bert_dir, tiny_data_dir, "gap", seeds=3, epochs=1)
    root = tmp_path / "studies"
    run = subprocess.run(
        [sys.executable, "-c", SIGINT_BETWEEN_TRIALS, "study", "launch", str(path), "--storage",
         str(root)], env=_env(ray_tmp), capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    # two of three seeds ran and the third was never created: the launch is interrupted,
    # not complete (exit 130, not 0) ...
    assert run.returncode == 130, out[-3000:]
    # ... it counts the plan's trials, not the two Tune created ...
    assert "study gap: 2 of 3 planned trials finished, 0 errored, 1 unfinished" in run.stdout
    # ... and prints the command that runs the third
    assert f"continue the study with:\n  mtl-tune study resume gap --storage {root}" in run.stderr
    assert read_meta(root / "gap").finished_at is None
    status = _cli(["study", "status", "gap", "--storage", str(root)], ray_tmp)
    # `study status` shows it unfinished until every planned trial has run
    assert "2 of 3 planned trials finished, 1 not ended" in status.stdout
    assert "no driver runs this study: it stopped before finishing" in status.stdout
    as_json = _cli(["study", "status", "gap", "--storage", str(root), "--json"], ray_tmp)
    record = json.loads(as_json.stdout)
    assert record["planned_trials"] == 3 and len(record["trials"]) == 2
    resumed = _cli(["study", "resume", "gap", "--storage", str(root)], ray_tmp)
    # the resume runs the third seed and the study is complete
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "3 of 3 planned trials finished, 0 errored, 0 unfinished" in resumed.stdout
    seeds = {t["seed"] for t in json.loads(_cli(
        ["study", "status", "gap", "--storage", str(root), "--json"], ray_tmp).stdout)["trials"]}
    assert seeds == {0, 1, 2}
    assert read_meta(root / "gap").finished_at is not None
