"""Multi-objective studies: the searcher is told each trial's best epoch, ASHA prunes on one
scalar, the Optuna record holds every objective, and `report search` draws the Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from ray import tune

from mtl_tune.reports import report_search
from mtl_tune.reports._pareto import non_dominated
from mtl_tune.studies import best_epochs, load_results
from mtl_tune.studies.driver._launch import StudyOutcome
from mtl_tune.studies.driver._searcher import BestEpochSearch
from mtl_tune.studies.results._results import read_result_rows
from mtl_tune.studies.spec import RAY_ID_ATTR, load_spec
from mtl_tune.studies.store import read_meta
from tests.studies.conftest import ASHA, TPE_SPACE, launch_on_shared_ray, tiny_fixed, write_spec

MO_TOP = """
name = "mo"
trainables = ["it7-cosrelu-tuned"]
search = "optuna-mo"
objectives = ["sst_acc", "para_acc", "sts_corr"]
prune_on = "overall"
num_samples = 4
max_concurrent = 4
optuna_seed = 5
"""
MO_TABLES = TPE_SPACE + ASHA
OBJECTIVES = ["sst_acc", "para_acc", "sts_corr"]


def test_searcher_is_told_the_best_epoch_not_the_last() -> None:
    searcher = BestEpochSearch("overall", "max", metric=["sst_acc", "sts_corr"],
                               mode=["max", "max"], sampler=optuna.samplers.TPESampler(seed=0))
    searcher.set_search_properties(None, None, {"lr": tune.uniform(0.0, 1.0)})
    assert searcher.suggest("t1") is not None
    searcher.on_trial_result("t1", {"training_iteration": 1, "overall": 0.6, "sst_acc": 0.4,
                                    "sts_corr": 0.7})
    last = {"training_iteration": 2, "overall": 0.5, "sst_acc": 0.9, "sts_corr": 0.9}
    searcher.on_trial_result("t1", last)
    searcher.on_trial_complete("t1", last)
    # epoch 1 was best by overall: its objectives are what Optuna learns from
    (trial,) = searcher._ot_study.trials
    assert trial.state == TrialState.COMPLETE and trial.values == [0.4, 0.7]


def test_a_trial_the_restored_searcher_never_suggested_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a driver killed between Tune's uploads of its state files restores a searcher older than
    # the trials: completing one it never suggested stopped the resumed study with a KeyError
    searcher = BestEpochSearch("overall", "max", metric="overall", mode="max",
                               sampler=optuna.samplers.TPESampler(seed=0))
    searcher.set_search_properties(None, None, {"lr": tune.uniform(0.0, 1.0)})
    assert searcher.suggest("t1") is not None
    searcher.on_trial_complete("t1", {"training_iteration": 1, "overall": 0.6})
    searcher.on_trial_complete("group-after-the-save", {"training_iteration": 1, "overall": 0.7})
    assert "the searcher has no trial group-after-the-save to complete" in caplog.text
    (trial,) = searcher._ot_study.trials
    assert trial.values == [0.6]


@pytest.fixture(scope="module")
def mo_study(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path, tiny_data_dir: Path
) -> tuple[Any, StudyOutcome]:

    folder = tmp_path_factory.mktemp("mo")
    path = write_spec(folder, MO_TOP, tiny_fixed(tiny_bert_dir, tiny_data_dir, epochs=2),
                      MO_TABLES)
    return load_spec(str(path)), launch_on_shared_ray(path, folder / "studies")


def test_multi_objective_record_holds_every_objective_at_the_best_epoch(
    mo_study: tuple[Any, StudyOutcome],
) -> None:
    spec, outcome = mo_study
    assert outcome.trials == 4 and outcome.errors == 0 and outcome.unfinished == 0
    meta = read_meta(outcome.folder)
    study = optuna.load_study(study_name=spec.name, storage=meta.optuna_storage)
    # three objectives, named, each maximised
    assert study.metric_names == OBJECTIVES
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE] * 3
    results = load_results(outcome.folder)
    best = best_epochs(results, "overall", "max").set_index("trial_id")
    trials = {t.user_attrs[RAY_ID_ATTR]: t for t in study.trials}
    # one record per Ray trial
    assert sorted(trials) == sorted(best.index)
    for trial_id, frozen in trials.items():
        # the point: every objective at the trial's best epoch by overall (prune_on)
        assert frozen.values == [best.loc[trial_id, k] for k in OBJECTIVES]
        assert frozen.user_attrs["best_epoch"] == best.loc[trial_id, "epoch"]
        rows = read_result_rows(Path(best.loc[trial_id, "trial_path"]))
        # ASHA pruned on overall: a trial it stopped after epoch 1 is PRUNED
        pruned = rows[-1]["training_iteration"] < 2
        assert frozen.state == (TrialState.PRUNED if pruned else TrialState.COMPLETE)
        # the intermediate values are the pruning scalar per epoch
        assert frozen.intermediate_values == {r["training_iteration"]: r["overall"]
                                              for r in rows}
    assert meta.objectives == {"sst_acc": "max", "para_acc": "max", "sts_corr": "max"}


def test_search_report_lists_the_front(mo_study: tuple[Any, StudyOutcome], tmp_path: Path) -> None:
    _, outcome = mo_study
    report = report_search(outcome.folder, out=tmp_path / "report", formats=("md", "csv"))
    best = best_epochs(load_results(outcome.folder), "overall", "max")
    mask = non_dominated(best[OBJECTIVES].to_numpy(dtype=float), ["max"] * 3)
    # the front table lists exactly the non-dominated trials, and the figure is drawn
    assert sorted(report.tables["pareto"]["trial_id"]) == sorted(best["trial_id"][mask])
    assert "pareto_front" in report.figures
    markdown = (report.folder / "report.md").read_text()
    assert "## Pareto front (non-dominated configurations)" in markdown
    # importances and history read the scalar of a multi-objective record
    assert not np.isnan(report.tables["top"]["overall"]).any()
