"""Studies run end to end on a local Ray of 2 CPUs: TPE + ASHA, a grid ablation, a sequential
search, the Optuna mirror, `study status` / `study list`, and refusals before any trial starts."""

from __future__ import annotations

import json
import math
import re
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from ray.tune import ExperimentAnalysis
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.exceptions import MtlTuneError, SpecError
from mtl_tune.studies import (
    TrialReport,
    human_bytes,
    launch_study,
    load_results,
    open_storage,
    resume_study,
    storage_root,
    study_status,
)
from mtl_tune.studies.driver import StudyOutcome
from mtl_tune.studies.results._results import read_result_rows
from mtl_tune.studies.spec import RAY_ID_ATTR, load_spec, trial_count
from mtl_tune.studies.store import read_meta
from tests.studies.conftest import ASHA, TPE_SPACE, stored_objects, tiny_fixed, write_spec

pytestmark = pytest.mark.usefixtures("ray_local")

OPTUNA_TOP = """
name = "tpe"
trainables = ["it7-cosrelu-tuned"]
search = "optuna"
num_samples = 4
max_concurrent = 1
optuna_seed = 3
"""
OPTUNA_TABLES = TPE_SPACE + ASHA


def _launch(folder: Path, top: str, fixed: dict[str, Any], tables: str = "", **kw: Any) -> Any:
    path = write_spec(folder, top, fixed, tables)
    spec = load_spec(str(path))
    outcome = launch_study(spec, folder / "studies", path.read_text(), verbose=0, **kw)
    return spec, outcome


def _trials(outcome: StudyOutcome, experiment: str) -> dict[str, Any]:
    """Ray's saved view of one experiment: trial id -> Trial (status, config, last_result)."""
    analysis = ExperimentAnalysis(str(outcome.folder / "tune" / experiment))
    return {t.trial_id: t for t in analysis.trials}


@pytest.fixture(scope="module")
def tpe_study(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path, tiny_data_dir: Path
) -> tuple[Any, StudyOutcome]:
    """One TPE + ASHA study of 4 trials x 2 epochs, one at a time: the trials reach ASHA's rung in
    the order they were created, so its decisions can be replayed."""
    folder = tmp_path_factory.mktemp("tpe")
    fixed = tiny_fixed(tiny_bert_dir, tiny_data_dir, epochs=2)
    return _launch(folder, OPTUNA_TOP, fixed, OPTUNA_TABLES)


def test_optuna_asha_study_finishes(tpe_study: tuple[Any, StudyOutcome]) -> None:
    spec, outcome = tpe_study
    trials = _trials(outcome, "main")
    # TPE started the spec's num_samples trials, and none errored
    assert outcome.trials == len(trials) == trial_count(spec) == 4 and outcome.errors == 0
    # every trial finished (ASHA may stop some after the grace period: that counts as finished)
    assert {t.status for t in trials.values()} == {"TERMINATED"}
    # ASHA's rule replayed on the results: at the rung (epoch 1, the grace period) a trial
    # stops when its score is below the median of the scores recorded there before it
    # (reduction factor 2); the others run to max_t (2 epochs)
    results = load_results(outcome.folder)
    at_rung = results[results["epoch"] == 1].set_index("trial_id")["overall"]
    events = [json.loads(line) for line in
              (outcome.folder / "trials.jsonl").read_text().splitlines()]
    created = list(dict.fromkeys(e["trial_id"] for e in events))  # by first event
    recorded: list[float] = []
    expected = {}
    for trial_id in created:  # one trial at a time: they reach the rung in this order
        stopped = bool(recorded) and at_rung[trial_id] < np.nanpercentile(recorded, 50)
        expected[trial_id] = 1 if stopped else 2
        recorded.append(at_rung[trial_id])
    epochs = {trial_id: t.last_result["training_iteration"] for trial_id, t in trials.items()}
    assert epochs == expected
    # and ASHA did act: some trial stopped at the rung
    assert 1 in epochs.values()


def test_status_cli_lists_every_trial(tpe_study: tuple[Any, StudyOutcome]) -> None:
    spec, outcome = tpe_study
    root = outcome.folder.parent
    result = CliRunner().invoke(app, ["study", "status", spec.name, "--storage", str(root)])
    # `study status` succeeds
    assert result.exit_code == 0, result.output
    for trial_id in _trials(outcome, "main"):
        # every trial of the study is listed
        assert trial_id in result.stdout
    # the searched keys are columns, and exactly one row is marked best
    header = result.stdout.splitlines()[0].split()
    # the searched keys, the epochs and the metric are columns
    assert {"trial_id", "state", "lr", "sts_head", "epochs", "Overall", "best"} <= set(header)
    # exactly one row is marked best
    assert sum(line.rstrip().endswith("*") for line in result.stdout.splitlines()) == 1


def test_finished_trials_keep_weights_only(tpe_study: tuple[Any, StudyOutcome]) -> None:
    _, outcome = tpe_study
    checkpoints = sorted((outcome.folder / "tune" / "main").glob("*/checkpoint_*"))
    trials = {c.parent for c in checkpoints}
    # every trial (finished or stopped by ASHA) still has a checkpoint with its weights ...
    assert len(trials) == 4 and all((c / "model.safetensors").is_file() for c in checkpoints)
    # ... and none keeps optimizer state: finished trials are never resumed
    assert [c for c in checkpoints if (c / "optimizer.pt").exists()] == []
    # each keeps its best epoch's checkpoint (the default keep_checkpoints = "best"), no other
    for trial in trials:
        rows = read_result_rows(trial)
        best = max(rows, key=lambda r: (r["overall"], -r["training_iteration"]))
        kept = {c.name for c in checkpoints if c.parent == trial}
        assert kept == {best["checkpoint_dir_name"]}
    kept_bytes = sum(p.stat().st_size for c in checkpoints for p in c.rglob("*") if p.is_file())
    on_disk = sum(p.stat().st_size for p in outcome.folder.rglob("*") if p.is_file())
    # the whole study folder holds at most 1.1 x one weights-only checkpoint per trial (with
    # the tiny model, its tokenizer files are a sixth of it; with MiniLM's weights, under 1 %)
    assert on_disk <= 1.1 * kept_bytes, (on_disk, kept_bytes)


def test_tunes_saved_state_holds_each_checkpoints_score_alone(
    tpe_study: tuple[Any, StudyOutcome]
) -> None:
    # Tune keeps every checkpoint's result in its saved state, rewritten at each save: there,
    # the study's metric alone; the whole epoch stays in the trial's result.json
    spec, outcome = tpe_study
    for trial in _trials(outcome, "main").values():
        kept = trial.run_metadata.checkpoint_manager.best_checkpoint_results
        rows = {r["checkpoint_dir_name"]: r for r in read_result_rows(Path(trial.local_path))}
        assert kept and all(r.metrics.keys() == {spec.metric} for r in kept)
        assert {Path(r.checkpoint.path).name: r.metrics[spec.metric] for r in kept} == {
            name: row[spec.metric] for name, row in rows.items()}
        assert len(rows["checkpoint_000000"]) > 20  # the epoch's report, whole


def test_status_shows_the_disk_a_study_uses(tpe_study: tuple[Any, StudyOutcome]) -> None:
    spec, outcome = tpe_study
    root = outcome.folder.parent
    result = CliRunner().invoke(app, ["study", "status", spec.name, "--storage", str(root)])
    size = sum(p.stat().st_size for p in outcome.folder.rglob("*") if p.is_file())
    # the last line gives the study folder's size and path
    last = result.stdout.splitlines()[-1]
    assert last == f"disk: {human_bytes(size)} in {outcome.folder}"


def test_status_of_unknown_study_is_a_clean_error(tpe_study: tuple[Any, StudyOutcome]) -> None:
    root = tpe_study[1].folder.parent
    result = CliRunner().invoke(app, ["study", "status", "nope", "--storage", str(root)])
    # an unknown study exits 1 and names the studies that exist
    assert result.exit_code == 1
    # the message names the unknown study and the studies that exist
    assert "no study 'nope'" in result.stderr and "['tpe']" in result.stderr


def test_list_cli_shows_trials_and_best(tpe_study: tuple[Any, StudyOutcome]) -> None:
    spec, outcome = tpe_study
    root = outcome.folder.parent
    result = CliRunner().invoke(app, ["study", "list", "--storage", str(root)])
    # `study list` succeeds
    assert result.exit_code == 0, result.output
    # the best overall of any trial at any epoch, from each trial's own result.json
    scores = [json.loads(line)["overall"]
              for path in (outcome.folder / "tune" / "main").glob("*/result.json")
              for line in path.read_text().splitlines()]
    assert len(scores) > 4  # every epoch of every trial, not only the last ones
    row = next(line for line in result.stdout.splitlines() if line.split()[:1] == ["tpe"])
    # the study's row: name, search, 4 trials, 4 planned, 4 finished, and the best overall
    assert row.split()[:5] == ["tpe", "optuna", "4", "4", "4"]
    # the best column is named after the study's metric, and a last column the disk used
    header = result.stdout.splitlines()[1].split()
    assert header[-3:] == ["best", "Overall", "disk"]
    assert math.isclose(float(row.split()[5]), max(scores), abs_tol=1e-4)


def test_optuna_mirror_holds_each_finished_ray_trial(tpe_study: tuple[Any, StudyOutcome]) -> None:
    spec, outcome = tpe_study
    url = read_meta(outcome.folder).optuna_storage
    study = optuna.load_study(study_name=spec.name, storage=url)
    finished = {k: t for k, t in _trials(outcome, "main").items() if t.status == "TERMINATED"}
    mirrored = {t.user_attrs[RAY_ID_ATTR]: t for t in study.trials}
    # exactly one Optuna trial per finished Ray trial, keyed by the Ray trial id
    assert sorted(mirrored) == sorted(finished) and len(study.trials) == len(finished)
    for trial_id, ray_trial in finished.items():
        frozen = mirrored[trial_id]
        epochs = read_result_rows(Path(ray_trial.path))
        scores = [r[spec.metric] for r in epochs]
        best = epochs[int(np.argmax(scores))]  # the earliest best epoch, as the reports pick
        # stopped by ASHA before its 2 planned epochs: PRUNED; else COMPLETE
        pruned = ray_trial.last_result["training_iteration"] < 2
        assert frozen.state == (TrialState.PRUNED if pruned else TrialState.COMPLETE)
        # its value is the best epoch's metric, the one `study status` and the reports use
        assert frozen.value == best[spec.metric]
        assert frozen.user_attrs["best_epoch"] == best["training_iteration"]
        # the per-task scores of that epoch are user attributes
        for key in ("sst_acc", "para_acc", "sts_corr", "mean_score"):
            assert frozen.user_attrs[key] == best[key], key
        # every epoch is an intermediate value
        assert frozen.intermediate_values == {r["training_iteration"]: r[spec.metric]
                                              for r in epochs}
        # its params are the searched keys of the Ray trial's config
        assert frozen.params == {k: ray_trial.config[k] for k in ("lr", "sts_head")}
        # and it records the epochs the trial ran, and the best epoch's checkpoint, kept
        assert frozen.user_attrs["epochs"] == ray_trial.last_result["training_iteration"]
        checkpoint = Path(ray_trial.path) / best["checkpoint_dir_name"]
        assert frozen.user_attrs["checkpoint"] == str(checkpoint) and checkpoint.is_dir()
        # real times: it ended when its last result came, and lasted as long as it trained
        assert frozen.datetime_complete is not None and frozen.datetime_start is not None
        assert frozen.datetime_complete.timestamp() == pytest.approx(
            ray_trial.last_result["timestamp"], abs=1)
        assert frozen.duration is not None and frozen.duration.total_seconds() == pytest.approx(
            ray_trial.last_result["time_total_s"], abs=1) and frozen.duration.total_seconds() > 0
    # the objective has the study metric's name
    assert study.metric_names == [spec.metric]
    # the study's direction follows the spec's mode
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE


def test_grid_ablation_three_trainables_two_seeds(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:
    top = """
name = "ablation"
trainables = ["it1-baseline", "it3-cosine-sts", "it6-balanced"]
search = "grid"
seeds = 2
max_concurrent = 4
"""
    journal = tmp_path / "optuna.log"
    spec, outcome = _launch(
        tmp_path,
        top,
        tiny_fixed(tiny_bert_dir, tiny_data_dir),
        '[scheduler]\ntype = "none"',
        optuna_storage=f"journal:{journal}",
    )
    trials = _trials(outcome, "main")
    # 3 trainables x 2 seeds = 6 trials, all finished
    assert trial_count(spec) == outcome.trials == len(trials) == 6 and outcome.errors == 0
    # every trial finished
    assert {t.status for t in trials.values()} == {"TERMINATED"}
    pairs = sorted((t.config["trainable"], t.config["seed"]) for t in trials.values())
    # each (trainable, seed) pair ran exactly once
    assert pairs == sorted(product(spec.trainables, [0, 1]))
    table = study_status(outcome.folder.parent, spec.name)
    # the status table has one row per trial, with the trainable and seed of each
    assert sorted(zip(table["trainable"], table["seed"], strict=True)) == pairs
    study = optuna.load_study(study_name=spec.name, storage=open_storage(f"journal:{journal}"))
    # an Optuna journal file (--optuna-storage PATH) works as the mirror's storage too
    assert sorted(t.user_attrs[RAY_ID_ATTR] for t in study.trials) == sorted(trials)
    # the mirror records the trainable as a parameter and the seed as a user attribute
    assert sorted((t.params["trainable"], t.user_attrs["seed"]) for t in study.trials) == pairs
    assert all(set(t.params) == {"trainable"} for t in study.trials)
    # so parameter importances never report the seed (noise) as a choice
    importances = optuna.importance.get_param_importances(study)
    assert list(importances) == ["trainable"]


def test_sequential_search_runs_stage2_at_stage1_best_lr(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:
    top = """
name = "paper"
trainables = ["it7-cosrelu-tuned"]
search = "sequential"
max_concurrent = 3
"""
    tables = """
[[sequential]]
key = "lr"
values = [1e-3, 1e-4, 1e-5]

[[sequential]]
key = "dropout"
values = [0.1, 0.4]

[scheduler]
type = "none"
"""
    spec, outcome = _launch(tmp_path, top, tiny_fixed(tiny_bert_dir, tiny_data_dir), tables)
    # one Tune experiment per stage, 3 + 2 trials, none errored
    assert outcome.experiments == ("stage1", "stage2")
    # 3 + 2 trials ran, none errored
    assert outcome.trials == trial_count(spec) == 5 and outcome.errors == 0
    stage1, stage2 = _trials(outcome, "stage1"), _trials(outcome, "stage2")
    analysis = ExperimentAnalysis(str(outcome.folder / "tune" / "stage1"))
    # stage 1's best lr, computed here from its results: the best epoch of each trial
    score = {
        trial.config["lr"]: analysis.trial_dataframes[tid][spec.metric].max()
        for tid, trial in stage1.items()
    }
    # stage 1 tried each lr once
    assert sorted(score) == [1e-5, 1e-4, 1e-3]
    best_lrs = {lr for lr, s in score.items() if s == max(score.values())}
    chosen = {trial.config["lr"] for trial in stage2.values()}
    # every stage-2 trial ran at stage 1's best lr
    assert len(chosen) == 1 and chosen <= best_lrs
    # stage 2 varied dropout over its values, once each
    assert sorted(t.config["dropout"] for t in stage2.values()) == [0.1, 0.4]
    # stage 1 left dropout at the preset's value (it was not searched yet)
    assert all("dropout" not in t.config for t in stage1.values())
    # the chosen value is recorded in the study's metadata, for resume and reports
    assert read_meta(outcome.folder).stage_best["lr"] in chosen
    table = study_status(outcome.folder.parent, spec.name)
    # status shows stage 2's rows with the lr they ran at
    assert set(table[table["experiment"] == "stage2"]["lr"]) == chosen


def test_resources_no_node_offers_fail_before_any_trial(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:
    top = 'name = "greedy"\ntrainables = ["it1-baseline"]\nsearch = "grid"'
    fixed = tiny_fixed(tiny_bert_dir, tiny_data_dir)
    path = write_spec(tmp_path, top, fixed, "[resources]\ngpu = 1")
    spec = load_spec(str(path))
    where = re.escape(str(path))
    # per-trial resources no node of the cluster offers are refused, naming them and the file
    with pytest.raises(SpecError, match=rf"resources \(cpu=1\.0, gpu=1\) per trial in {where}"):
        launch_study(spec, tmp_path / "studies", path.read_text(), verbose=0)
    # nothing ran and no study folder was left behind
    assert not (tmp_path / "studies" / "greedy").exists()


def test_launch_refuses_an_existing_study(tpe_study: tuple[Any, StudyOutcome]) -> None:
    spec, outcome = tpe_study
    # launching a study whose folder exists is refused with the way to resume it, --storage
    # included
    root = outcome.folder.parent
    with pytest.raises(SpecError, match=rf"study 'tpe' already exists .*`mtl-tune study resume "
                                        rf"tpe --storage {root}` or launch with another --name"):
        launch_study(spec, root, "", verbose=0)


def test_unreadable_data_leaves_no_study_folder(tmp_path: Path, tiny_bert_dir: Path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    top = 'name = "nodata"\ntrainables = ["it1-baseline"]'
    path = write_spec(tmp_path, top, tiny_fixed(tiny_bert_dir, empty))
    # a data folder without the task files fails the launch with the project's own error
    with pytest.raises(MtlTuneError, match=r"missing data file .*ids-sst-train\.csv"):
        launch_study(load_spec(str(path)), tmp_path / "studies", path.read_text(), verbose=0)
    # nothing ran, so no half-made study folder blocks the next launch
    assert not (tmp_path / "studies" / "nodata").exists()


def test_unreadable_data_leaves_nothing_in_the_store(
    s3_bucket: str, tmp_path: Path, tiny_bert_dir: Path
) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    top = 'name = "nodata"\ntrainables = ["it1-baseline"]'
    path = write_spec(tmp_path, top, tiny_fixed(tiny_bert_dir, empty))
    with pytest.raises(MtlTuneError, match=r"missing data file .*ids-sst-train\.csv"):
        launch_study(load_spec(str(path)), storage_root(s3_bucket), path.read_text(),
                     optuna_storage=f"sqlite:///{tmp_path / 'optuna.db'}", verbose=0)
    # the spec and study.json the launch had uploaded are deleted again; no lock is left
    assert stored_objects(s3_bucket) == {}


def test_resume_of_a_finished_study_reruns_nothing(
    tpe_study: tuple[Any, StudyOutcome], tmp_path: Path
) -> None:
    import dataclasses
    import shutil

    spec, outcome = tpe_study
    root = tmp_path / "studies"  # a copy: the module's study stays as launched for the others
    shutil.copytree(outcome.folder, root / spec.name, symlinks=True)
    copy = dataclasses.replace(outcome, folder=root / spec.name)
    before = {k: t.last_result for k, t in _trials(copy, "main").items()}
    again = resume_study(root, spec.name, verbose=0)
    # the resumed study reports the same trials, none errored, all of the plan
    assert (again.trials, again.finished, again.planned, again.errors) == (4, 4, 4, 0)
    after = {k: t.last_result for k, t in _trials(copy, "main").items()}
    # no trial ran again: same ids, same last results (timestamps included)
    assert after == before
    # the copy's Optuna mirror (the resume moved it with the study) gained no duplicate
    url = read_meta(root / spec.name).optuna_storage
    assert str(root / spec.name) in url
    assert len(optuna.load_study(study_name=spec.name, storage=url).trials) == 4


def test_patience_ends_trials_early_alongside_asha(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:
    top = """
name = "patient"
trainables = ["it6-balanced"]
search = "grid"
seeds = 2
max_concurrent = 2
"""
    # no epoch beats the first by a whole point: with patience 1 each trial stops after epoch 2
    fixed = tiny_fixed(tiny_bert_dir, tiny_data_dir, epochs=4, patience=1, min_delta=1.0)
    tables = '[scheduler]\ntype = "asha"\ngrace_period = 3\nreduction_factor = 2'
    spec, outcome = _launch(tmp_path, top, fixed, tables)
    trials = _trials(outcome, "main")
    assert outcome.errors == 0 and len(trials) == 2
    assert {t.last_result["training_iteration"] for t in trials.values()} == {2}
    assert {t.last_result["stale_epochs"] for t in trials.values()} == {1.0}


def test_patience_stopper_rule() -> None:
    from mtl_tune.studies.driver._stopper import PatienceStopper

    def result(patience: int, stale: int) -> dict:
        return {"overall": 0.5, **TrialReport(
            patience=patience, stale_epochs=stale, group_patience=0, min_delta=0.0,
            epochs_planned=5, best_overall=0.5).metrics()}

    stopper = PatienceStopper()
    # stops once the stale epochs reach the trial's patience; patience 0 never stops
    assert stopper("t", result(2, 2))
    assert not stopper("t", result(2, 1))
    assert not stopper("t", result(0, 5))
    assert not stopper.stop_all()
    with pytest.raises(MtlTuneError, match=r"lacks the report keys \['patience'"):
        stopper("t", {"overall": 0.5, "stale_epochs": 2})
