"""Rehearsals (`study launch --simulate`): a study's exact plan with trials that do not train.

The response surface's rules, a simulated study of 50 trials with seed groups and ASHA end to
end (its status, Optuna record and search report agree, each says it is simulated), and the
refusals of what `--simulate` cannot honour."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from ray.tune import ExperimentAnalysis
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.platform.response_surface import quality, simulated_scores
from mtl_tune.reports import report_search
from mtl_tune.studies import SIMULATED_NOTE, launch_study, study_status
from mtl_tune.studies.results import open_study, read_result_rows, run_lines, study_results
from mtl_tune.studies.results._epochs_run import epoch_lengths, stopped_early
from mtl_tune.studies.spec import load_spec
from mtl_tune.studies.store import read_digest, read_meta, read_trials
from tests.studies.conftest import (
    ASHA,
    NO_SCHEDULER,
    launch_and_kill,
    resume_cli,
    write_spec,
)

CONFIG = {"lr": 2e-4, "dropout": 0.2, "sts_head": "cosine", "sampling": "balanced"}


def test_the_response_surface_is_deterministic_and_shaped_like_training() -> None:
    first = simulated_scores({**CONFIG, "seed": 3}, 2)
    # the same configuration, seed and epoch score the same in any process
    assert simulated_scores({**CONFIG, "seed": 3}, 2) == first
    assert first["overall"] == pytest.approx(
        (first["sst_acc"] + first["para_acc"] + (first["sts_corr"] + 1) / 2) / 3)
    # the learning rate's bell peaks at 2e-4; scores rise with the epochs
    assert quality({**CONFIG, "lr": 2e-4}) > quality({**CONFIG, "lr": 2e-5}) + 0.5
    assert quality({**CONFIG, "lr": 2e-4}) > quality({**CONFIG, "lr": 1e-3})
    mean = [statistics.mean(simulated_scores({**CONFIG, "seed": s}, e)["overall"]
                            for s in range(20)) for e in (1, 3, 6)]
    assert mean[0] < mean[1] < mean[2]
    # seeds spread SST accuracy by about 0.02 (sd), as real seeds do
    sst = [simulated_scores({**CONFIG, "seed": s}, 6)["sst_acc"] for s in range(400)]
    assert 0.016 < statistics.stdev(sst) < 0.024


def test_crossed_seeds_split_the_seed_shift_and_other_runs_score_as_before() -> None:
    # a run without init_seed or data_seed draws what every earlier study drew (pinned: a
    # resumed rehearsal must not change its scores)
    before = simulated_scores({**CONFIG, "init_seed": None, "data_seed": None, "seed": 3}, 2)
    assert before["sst_acc"] == pytest.approx(0.4383273388105355, abs=1e-12)
    assert before["overall"] == pytest.approx(0.6853757702636858, abs=1e-12)
    # crossed: the initialisation seed and the data seed each move the run, and together as
    # much as one seed did (sd about 0.02 SST)
    def sst(init: int, data: int) -> float:
        return simulated_scores({**CONFIG, "seed": 0, "init_seed": init, "data_seed": data},
                                6)["sst_acc"]

    table = [[sst(i, d) for d in range(20)] for i in range(20)]
    by_init = [statistics.mean(row) for row in table]
    by_data = [statistics.mean(col) for col in zip(*table, strict=True)]
    assert 0.008 < statistics.stdev(by_init) < 0.02 and 0.008 < statistics.stdev(by_data) < 0.02
    assert 0.016 < statistics.stdev([v for row in table for v in row]) < 0.026


def test_the_run_summary_counts_early_stops_and_epoch_lengths() -> None:
    trials = [(1, 4), (4, 4), (2, 4), (1, 4), (4, 4)]
    assert stopped_early(trials) == {1: 2, 2: 1}
    # two slots, in order: 1 | 4 ; 2 starts at 1 on the first, 1 at 3, 4 at 4 -> ends at 8
    assert epoch_lengths(trials, 2) == 8
    assert epoch_lengths(trials, 5) == 4
    # a sequential search's stages run one after the other: 1 | 4 on two slots, then 2, 1, 4
    assert epoch_lengths(trials, 2, (2, 3)) == 4 + 5
    lines = run_lines(trials, 2, 0.5, 60.0)
    assert lines == [
        "epochs trained by the trials that ended: 12 of 20 planned; 3 trial(s) stopped early: "
        "2 after epoch 1, 1 after epoch 2",
        "end to end on 2 trial(s) at a time: about 8 epoch lengths, 8 min at 60 s per epoch, "
        "0.1 GPU-hours",
    ]


@pytest.mark.parametrize(("cpu", "gpu", "concurrent", "expected"), [
    (2.0, 0.5, 4, (8, 2)),  # two trials share a GPU
    (0.5, 0.6, 4, (2, 4)),  # 0.6 GPU: one trial a GPU, as Ray places fractions on one GPU
    (1.0, 0.3, 7, (7, 3)),  # three a GPU
    (1.0, 2.0, 3, (3, 6)),
    (0.25, 0.0, 2, (1, 0)),
])
def test_a_rehearsal_gets_the_logical_resources_its_concurrent_trials_take(
    cpu: float, gpu: float, concurrent: int, expected: tuple[int, int], tmp_path: Path
) -> None:
    from mtl_tune.studies.driver._local_ray import planned_resources
    from mtl_tune.studies.spec import Resources

    spec = load_spec(str(write_spec(tmp_path, REHEARSAL, {"epochs": 1}, REHEARSAL_SPACE)))
    spec = spec.replace(resources=Resources(cpu, gpu), max_concurrent=concurrent)
    assert planned_resources(spec) == expected


@pytest.mark.process
def test_a_simulated_trial_imports_no_torch() -> None:
    code = ("import sys, mtl_tune.trainables._simulated, mtl_tune.trainables; "
            "print('torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


REHEARSAL = """
name = "rehearsal"
trainables = ["it10-warmup-decay"]
search = "optuna"
num_samples = 25
seeds = 2
max_concurrent = 4
optuna_seed = 0
"""
REHEARSAL_SPACE = """
[space]
lr = { loguniform = [1e-5, 1e-3] }
dropout = { uniform = [0.1, 0.5] }
sampling = { choice = ["balanced", "temperature"] }
sampling_temperature = { uniform = [1.0, 5.0], when = { sampling = "temperature" } }
"""


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> tuple[Any, Path]:
    """25 configurations x 2 seeds under ASHA, simulated, on the suite's shared Ray."""
    folder = tmp_path_factory.mktemp("rehearsal")
    path = write_spec(folder, REHEARSAL, {"epochs": 4}, REHEARSAL_SPACE + ASHA)
    outcome = launch_study(load_spec(str(path)), folder / "studies", path.read_text(),
                           verbose=0, simulate=True)
    return outcome, folder / "studies"


def test_a_simulated_study_of_50_trials_agrees_with_itself(
    rehearsal: tuple[Any, Path], tmp_path: Path
) -> None:
    outcome, root = rehearsal
    assert (outcome.trials, outcome.finished, outcome.errors) == (50, 50, 0)
    assert read_meta(outcome.folder).simulated
    status = study_status(root, "rehearsal")
    assert len(status) == 50
    # ASHA stopped groups at its rungs: the summary counts what the status shows
    short = status[status["epochs"] < 4]
    assert 0 < len(short) < 50
    assert sum(stopped_early(outcome.trial_epochs).values()) == len(short)
    assert sum(t for t, _ in outcome.trial_epochs) == int(status["epochs"].sum())
    # the Optuna record holds one trial per seed group; its best is the report's best group
    url = read_meta(outcome.folder).optuna_storage
    record = optuna.load_study(study_name="rehearsal", storage=url)
    assert len(record.trials) == 25
    report = report_search(outcome.folder, out=tmp_path / "report", formats=("csv", "md"))
    groups = report.tables["seed_groups"]
    assert groups["overall"].max() == pytest.approx(record.best_value)
    # every part says the study is simulated, first
    assert report.headline[0] == SIMULATED_NOTE
    assert (tmp_path / "report" / "report.md").read_text().startswith("# SIMULATED")
    shown = CliRunner().invoke(app, ["study", "status", "rehearsal", "--storage", str(root)])
    assert shown.exit_code == 0 and shown.stdout.splitlines()[0] == SIMULATED_NOTE
    as_json = CliRunner().invoke(app, ["study", "status", "rehearsal", "--storage", str(root),
                                       "--json"])
    assert json.loads(as_json.stdout)["simulated"] is True
    # a simulated checkpoint predicts nothing: it holds no weights
    checkpoint = next(outcome.folder.glob("tune/main/*/checkpoint_*"))
    refused = CliRunner().invoke(app, ["export", str(checkpoint), "--out", str(tmp_path / "x")])
    assert refused.exit_code == 1 and "is a simulated trial's checkpoint" in refused.stderr


def test_the_results_digest_holds_what_the_trials_folders_hold(
    rehearsal: tuple[Any, Path]
) -> None:
    # the driver's digest (what `study status` reads on a store) and Tune's result.json files
    # give the same results, epoch by epoch, trial by trial
    outcome, _ = rehearsal
    info = open_study(outcome.folder)
    from_folders = study_results(info)
    from_digest = study_results(info, digest=read_digest(outcome.folder))
    assert len(from_folders) > 50
    known = [c for c in from_folders.columns if c not in ("checkpoint", "error")]
    pd.testing.assert_frame_equal(from_digest[known], from_folders[known])
    # which checkpoints are kept only the trials' folders tell
    assert from_folders["checkpoint"].notna().any() and from_digest["checkpoint"].isna().all()


def _refused(args: list[str]) -> str:
    result = CliRunner().invoke(app, ["study", "launch", *args])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.output
    return result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--simulate", "--samples", "0"],
     "--samples must be >= 1 (on the command line), but got 0"),
    (["--epoch-seconds", "2"],
     "--epoch-seconds 2.0 sets a simulated epoch's duration (on the command line): add "
     "--simulate, or leave it out"),
    (["--simulate", "--dry-run"],
     "--simulate runs the plan with simulated trials and --dry-run only prints it"),
    (["--simulate", "--epoch-seconds", "-1"],
     "--epoch-seconds must be a finite number >= 0 (on the command line), but got -1.0"),
])
def test_simulate_refuses_what_it_cannot_honour(
    args: list[str], message: str, tmp_path: Path
) -> None:
    error = _refused(["demo", "--storage", str(tmp_path), *args])
    assert message in error
    assert not any(tmp_path.iterdir())  # nothing was made


def _ended(folder: Path, count: int) -> int | None:
    """How many trials ended, once at least `count` did; None before."""
    if not (folder / "trials.jsonl").is_file():
        return None
    ended = sum(r.state == "TERMINATED" for r in read_trials(folder).values())
    return ended if ended >= count else None


def test_a_killed_rehearsal_resumes_simulated(
    tmp_path: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    top = ('name = "crash"\ntrainables = ["it10-warmup-decay"]\nsearch = "optuna"\n'
           "num_samples = 6\nmax_concurrent = 2\noptuna_seed = 0")
    path = write_spec(tmp_path, top, {"epochs": 3}, REHEARSAL_SPACE + NO_SCHEDULER)
    root = tmp_path / "studies"
    ended = launch_and_kill(path, tiny_data_dir, root, ray_tmp,
                            lambda: _ended(root / "crash", 2),
                            extra=("--simulate", "--epoch-seconds", "0.3"))
    assert 2 <= ended < 6  # killed mid-study
    output = resume_cli("crash", root, ray_tmp, tmp_path / "resume.log")
    # it resumed as it was launched: simulated, each trial to its planned epochs, none twice
    assert "simulated study crash: 6 of 6 planned trials finished, 0 errored" in output
    trials = ExperimentAnalysis(str(root / "crash" / "tune" / "main")).trials
    assert len(trials) == 6
    for trial in trials:
        rows = read_result_rows(Path(trial.path))
        assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
        assert {r["device"] for r in rows} == {"simulated"}
