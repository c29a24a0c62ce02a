from pathlib import Path

import numpy as np
import pytest
from ray.tune import ExperimentAnalysis

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.reports import dev_table, usage
from mtl_tune.studies import best_epochs, load_results, open_study
from tests.reports.conftest import SEEDS, TRAINABLES


def test_one_row_per_trial_and_epoch_equal_to_ray_results(study: Path) -> None:
    results = load_results(study)
    analysis = ExperimentAnalysis(str(study / "tune" / "main"))
    # every trial of the grid, each with its two epochs
    assert len(results) == len(TRAINABLES) * len(SEEDS) * 2
    for trial in analysis.trials:
        raw = analysis.trial_dataframes[trial.trial_id].sort_values("training_iteration")
        mine = results[results["trial_id"] == trial.trial_id].sort_values("epoch")
        # the trial's identity, state and config: those Ray's ExperimentAnalysis gives
        assert set(mine["trainable"]) == {trial.config["trainable"]}
        assert set(mine["seed"]) == {trial.config["seed"]}
        assert set(mine["status"]) == {"TERMINATED"}
        assert set(mine["config/batch_size"]) == {8}
        # each epoch's metrics equal Ray's reported results, in order
        for key in (*METRIC_KEYS, "hostname", "node_id", "device"):
            assert mine[key].tolist() == raw[key].tolist()
        # each epoch points at the checkpoint folder it reported
        assert [Path(c).name for c in mine["checkpoint"]] == raw["checkpoint_dir_name"].tolist()


def test_best_epoch_is_the_max_of_overall(study: Path) -> None:
    results = load_results(study)
    best = best_epochs(results)
    for row in best.itertuples(index=False):
        trial = results[results["trial_id"] == row.trial_id]
        # a trial's best epoch holds its highest dev overall
        assert row.overall == trial["overall"].max()


def test_running_pending_and_errored_trials_are_loaded(messy_study: Path) -> None:
    results = load_results(messy_study)
    trials = results.drop_duplicates(["experiment", "trial_id"]).set_index(["trainable", "seed"])
    # each trial carries its Ray status, from both experiments (stages)
    assert trials.loc[("it1-baseline", 1), "status"] == "RUNNING"
    assert trials.loc[("it4-round-robin", 1), "status"] == "PENDING"
    assert trials.loc[("it1-baseline", 2), "status"] == "ERROR"
    assert set(results["experiment"]) == {"main", "extra"}
    # an errored trial keeps the last line of its error file
    assert "sts_head must be one of" in trials.loc[("it1-baseline", 2), "error"]
    running = results[(results["trainable"] == "it1-baseline") & (results["seed"] == 1)]
    # a running trial has the epochs it reported so far (a half-written line is skipped)
    assert running["epoch"].tolist() == [1]
    # a pending trial is still one row, without epoch or metrics
    pending = results[(results["trainable"] == "it4-round-robin") & (results["seed"] == 1)]
    assert len(pending) == 1 and pending["epoch"].isna().all() and pending["overall"].isna().all()


def test_a_folder_without_experiments_is_refused(tmp_path: Path) -> None:
    # a folder that holds no experiment is not a study
    with pytest.raises(MtlTuneError, match="holds no experiment .*study launch"):
        open_study(tmp_path)


def test_malformed_study_json_names_the_file(study: Path, tmp_path: Path) -> None:
    (tmp_path / "tune").symlink_to(study / "tune")
    (tmp_path / "study.json").write_text("{not json")
    # bad metadata is reported with its file and line
    with pytest.raises(MtlTuneError, match=r"study.json:1: not valid JSON"):
        open_study(tmp_path)


def test_usage_sums_trial_wall_times(study: Path) -> None:
    analysis = ExperimentAnalysis(str(study / "tune" / "main"))
    seconds = sum(analysis.trial_dataframes[t.trial_id]["time_total_s"].max()
                  for t in analysis.trials)
    used = usage(load_results(study))
    # trial hours: the sum of each trial's wall time; GPU-hours weigh it by GPUs per trial
    assert used.trial_hours == pytest.approx(seconds / 3600)
    assert used.gpu_hours == 0.0 and used.cpu_hours == pytest.approx(seconds / 3600)


def test_study_without_results_yet(pending_study: Path) -> None:
    results = load_results(pending_study)
    # every trial is listed, pending, with empty metrics
    assert len(results) == len(TRAINABLES) * len(SEEDS)
    assert set(results["status"]) == {"PENDING"} and results["overall"].isna().all()
    table = dev_table(results, ["it1-baseline"])
    # the table has its rows, with no trial counted and no number
    assert table[["trials", "n"]].values.tolist() == [["2 pending", 0]]
    assert np.isnan(table["overall"].iloc[0])


def test_a_study_without_its_own_record_is_read_from_tune(study: Path, tmp_path: Path) -> None:
    from mtl_tune.studies.store._trial_log import read_trials, repair_record
    from tests.reports.conftest import copy_study

    expected = load_results(study)
    old = copy_study(study, tmp_path / "old")
    (old / "trials.jsonl").unlink()  # as a study launched before mtl-tune kept its record
    before = sorted(p.relative_to(old) for p in old.rglob("*"))
    migrated = load_results(old)
    # read from Tune's saved state, with the same trials and states; a reader writes nothing
    columns = ["trial_id", "status", "epoch", "overall"]
    assert migrated[columns].equals(expected[columns])
    assert sorted(p.relative_to(old) for p in old.rglob("*")) == before
    # a resuming driver writes the record from that state, once
    assert not repair_record(old) and (old / "trials.jsonl").is_file()
    assert {k: r.state for k, r in read_trials(old).items()} == {
        k: r.state for k, r in read_trials(study).items()}


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"search": "random"}, r"study.json: search must be one of \('optuna', 'optuna-mo', "
         r"'grid', 'sequential', 'pbt'\), but got 'random'"),
        ({"mode": "up"}, r"study.json: mode must be one of \('max', 'min'\), but got 'up'"),
        ({"search": "optuna-mo", "objectives": {"sst_acc": "up"}},
         r"study.json: objectives must map each metric to 'max' or 'min', as the spec's "
         r"`objectives` table does, but got \{'sst_acc': 'up'\}; correct it in study.json"),
        ({"search": "optuna-mo", "objectives": ["sst_acc"]},
         r"study.json: `objectives` must be dict, but got \['sst_acc'\]; .* correct it by "
         r"hand"),
    ],
)
def test_bad_study_json_values_are_refused(
    study: Path, tmp_path: Path, meta: dict, message: str
) -> None:
    import json

    (tmp_path / "tune").symlink_to(study / "tune")
    (tmp_path / "study.json").write_text(json.dumps({"name": "x", **meta}))
    # each value names the file, the rule and what it got
    with pytest.raises(MtlTuneError, match=message):
        open_study(tmp_path)
