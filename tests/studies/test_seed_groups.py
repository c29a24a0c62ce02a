"""A tiny Optuna study in seed groups, end to end on Ray: each configuration runs over 2 seeds,
ASHA's rungs judge the groups' means (a seed that gets there first is paused, then resumed from
its checkpoint), and the Optuna record holds one trial per group."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest

from mtl_tune.reports import report_search
from mtl_tune.studies import load_results
from mtl_tune.studies.driver._launch import StudyOutcome
from mtl_tune.studies.spec import RAY_ID_ATTR, load_spec
from mtl_tune.studies.store import read_meta
from mtl_tune.studies.store._group_log import group_log_path, read_group_events
from tests.studies.conftest import (
    ASHA,
    TPE_SPACE,
    launch_on_own_ray,
    launch_on_shared_ray,
    tiny_fixed,
    write_spec,
)

pytestmark = pytest.mark.process  # starts Ray or another process

TOP = """
name = "groups"
trainables = ["it7-cosrelu-tuned"]
search = "optuna"
num_samples = 3
seeds = 2
max_concurrent = 4
optuna_seed = 3
"""


@pytest.fixture(scope="module")
def group_study(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path, tiny_data_dir: Path
) -> tuple[Any, StudyOutcome]:

    folder = tmp_path_factory.mktemp("groups")
    # patience 1: each seed alone would stop after its first epoch that is no better; the
    # group's mean decides instead, at every epoch
    fixed = tiny_fixed(tiny_bert_dir, tiny_data_dir, epochs=3, patience=1)
    path = write_spec(folder, TOP, fixed, TPE_SPACE + ASHA)
    return load_spec(str(path)), launch_on_shared_ray(path, folder / "studies")


def _epochs_by_trial(outcome: StudyOutcome) -> dict[str, list[int]]:
    results = load_results(outcome.folder)
    return {t: sorted(rows["training_iteration"].astype(int))
            for t, rows in results.groupby("trial_id")}


def test_seeds_of_a_group_stop_together_at_a_rung(group_study: tuple[Any, StudyOutcome]) -> None:
    _, outcome = group_study
    assert outcome.trials == 6 and outcome.errors == 0 and outcome.unfinished == 0
    results = load_results(outcome.folder)
    groups = results.groupby("config/seed_group")
    assert groups.ngroups == 3
    events = read_group_events(group_log_path(outcome.folder))
    decisions = [e for e in events if e["event"] == "decision"]
    epochs = _epochs_by_trial(outcome)
    for group, rows in groups:
        seeds = sorted(rows["config/seed"].unique())
        assert seeds == [0, 1]
        # every seed of the group ran the same epochs: none stopped while its sibling went on
        trial_epochs = {tuple(epochs[t]) for t in rows["trial_id"].unique()}
        assert len(trial_epochs) == 1, (group, trial_epochs)
        (ran,) = trial_epochs
        mine = [e for e in decisions if e["group"] == group]
        assert [e["epoch"] for e in mine] == [1, 2][: len(mine)]
        # each decision is on the mean of both seeds at that epoch, as the trials reported it
        for event in mine:
            at = rows[rows["training_iteration"] == event["epoch"]]
            assert event["mean"] == pytest.approx(at["overall"].mean())
            assert sorted(event["seeds"]) == sorted(at["trial_id"])
        stopped = [e["epoch"] for e in mine if e["decision"] == "stop"]
        assert max(ran) == (stopped[0] if stopped else 3)
        # patience 1 ran on the group's mean overall, by the trainer's rule: a decision whose
        # mean is below the last better one's is one stale epoch, which stops the group
        reference = -math.inf
        for event in mine:
            stale = 0 if event["mean_overall"] >= reference else 1
            reference = max(reference, event["mean_overall"]) if stale == 0 else reference
            assert event["stale"] == stale, (group, mine)
            if stale:  # stopped, by patience unless the rung had stopped it already
                assert event["decision"] == "stop" and event["why"] in ("rung", "patience")
            else:
                assert event["why"] != "patience"
    # the first group at rung 1 always continues; each group's first seed there waited, paused
    assert decisions[0]["epoch"] == 1 and decisions[0]["decision"] == "continue"
    waits = {(e["group"], e["epoch"]) for e in events if e["event"] == "wait"}
    assert {(e["group"], e["epoch"]) for e in decisions} <= waits


def test_the_optuna_record_holds_one_trial_per_group(
    group_study: tuple[Any, StudyOutcome],
) -> None:
    spec, outcome = group_study
    study = optuna.load_study(study_name=spec.name,
                              storage=read_meta(outcome.folder).optuna_storage)
    trials = study.get_trials()
    results = load_results(outcome.folder)
    assert sorted(t.user_attrs[RAY_ID_ATTR] for t in trials) == sorted(
        results["config/seed_group"].unique())
    for trial in trials:
        rows = results[results["config/seed_group"] == trial.user_attrs[RAY_ID_ATTR]]
        means = rows.groupby("training_iteration")["overall"].mean()
        best = int(means.idxmax())
        assert trial.user_attrs["best_epoch"] == best
        assert trial.value == pytest.approx(means[best])
        assert trial.intermediate_values == pytest.approx(means.to_dict())
        seeds = trial.user_attrs["seed_scores"]
        assert sorted(seeds) == ["0", "1"]
        for seed, scores in seeds.items():
            own = rows[(rows["config/seed"] == int(seed)) & (rows["training_iteration"] == best)]
            assert scores["sts_corr"] == pytest.approx(float(own["sts_corr"].iloc[0]))
            # and its checkpoint at that epoch: the one the results name
            assert trial.user_attrs["seed_checkpoints"][seed] == own["checkpoint"].iloc[0]
        assert "seed" not in trial.params and set(trial.params) == {"lr", "sts_head"}
        stopped_early = means.index.max() < 3
        expected = optuna.trial.TrialState.PRUNED if stopped_early else \
            optuna.trial.TrialState.COMPLETE
        assert trial.state == expected


def test_report_search_ranks_groups_on_their_mean_and_lists_the_decisions(
    group_study: tuple[Any, StudyOutcome], tmp_path: Path,
) -> None:
    spec, outcome = group_study
    report = report_search(outcome.folder, out=tmp_path / "report", formats=("md", "csv"))
    groups = report.tables["seed_groups"]
    study = optuna.load_study(study_name=spec.name,
                              storage=read_meta(outcome.folder).optuna_storage)
    told = {t.user_attrs[RAY_ID_ATTR]: t for t in study.get_trials()}
    # three configurations, best first, each on the value Optuna was told for it
    assert len(groups) == 3 and list(groups["overall"]) == sorted(groups["overall"], reverse=True)
    for row in groups.to_dict("records"):
        assert row["overall"] == pytest.approx(told[row["group"]].value)
        assert row["epoch"] == told[row["group"]].user_attrs["best_epoch"]
        assert row["seeds"] == 2
    decisions = report.tables["rung_decisions"]
    logged = [e for e in read_group_events(group_log_path(outcome.folder))
              if e["event"] == "decision"]
    assert list(zip(decisions["group"], decisions["epoch"], decisions["decision"],
                    strict=True)) == [(e["group"], e["epoch"], e["decision"]) for e in logged]
    stopped = {e["group"]: e for e in logged if e["decision"] == "stop"}
    for row in groups.to_dict("records"):
        stop = stopped.get(row["group"])
        where = "no" if stop is None else f"rung {stop['epoch']}"
        if stop is not None and stop["why"] == "patience":
            where = f"patience at {stop['epoch']}"
        assert row["stopped"] == where
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Configurations on the mean of their seeds" in text and "Seed-group decisions" in text


def test_paused_seeds_free_their_gpu_for_the_others(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:
    """One logical GPU, half a GPU per trial, two groups of two seeds live at once: only two
    trials fit. A seed that waits at a rung must give its half back, or its sibling (and the
    other group's) could never start and the study would hang."""

    top = TOP.replace("num_samples = 3", "num_samples = 2")
    tables = TPE_SPACE + ASHA + "\n[resources]\ncpu = 0.5\ngpu = 0.5\n"
    path = write_spec(tmp_path, top, tiny_fixed(tiny_bert_dir, tiny_data_dir, epochs=3), tables)
    outcome = launch_on_own_ray(path, tmp_path / "studies", gpus=1)
    assert outcome.trials == 4 and outcome.errors == 0 and outcome.unfinished == 0
    events = read_group_events(group_log_path(outcome.folder))
    waited = {e["trial"] for e in events if e["event"] == "wait"}
    results = load_results(outcome.folder)
    # seeds did wait, and each of them ran again afterwards, on the one GPU
    assert waited and set(results["gpu_ids"]) == {"0"}
    for trial in waited:
        epochs = results[results["trial_id"] == trial]["training_iteration"]
        waits = [e["epoch"] for e in events if e["event"] == "wait" and e["trial"] == trial]
        stopped = any(e["decision"] == "stop" and trial in e["seeds"] and e["epoch"] == waits[-1]
                      for e in events if e["event"] == "decision")
        assert stopped or epochs.max() > waits[-1], (trial, waits, list(epochs))


def test_a_multi_objective_search_in_seed_groups_has_a_front_of_groups(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:

    top = TOP.replace('search = "optuna"', 'search = "optuna-mo"\nobjectives = ["sst_acc", '
                      '"sts_corr"]').replace("num_samples = 3", "num_samples = 2")
    path = write_spec(tmp_path, top, tiny_fixed(tiny_bert_dir, tiny_data_dir, epochs=2),
                      TPE_SPACE + ASHA)
    spec, outcome = load_spec(str(path)), launch_on_shared_ray(path, tmp_path / "studies")
    assert outcome.trials == 4 and outcome.errors == 0
    study = optuna.load_study(study_name=spec.name,
                              storage=read_meta(outcome.folder).optuna_storage)
    results = load_results(outcome.folder)
    assert len(study.trials) == 2 and study.metric_names == ["sst_acc", "sts_corr"]
    for trial in study.trials:
        rows = results[results["config/seed_group"] == trial.user_attrs[RAY_ID_ATTR]]
        at = rows[rows["training_iteration"] == trial.user_attrs["best_epoch"]]
        # each objective is the seeds' mean at the epoch whose mean overall is best
        assert trial.values == pytest.approx([at["sst_acc"].mean(), at["sts_corr"].mean()])
    report = report_search(outcome.folder, out=tmp_path / "report", formats=("md",))
    # the front, computed here from the groups' objective values: the groups no other group
    # matches or beats on both objectives (both maximised) while beating on one
    points = {t.user_attrs[RAY_ID_ATTR]: tuple(t.values) for t in study.trials}
    front = {g for g, p in points.items() if not any(
        all(o >= v for o, v in zip(q, p, strict=True)) and q != p for q in points.values())}
    # the report's front is that set of groups, not single seeds
    assert set(report.tables["pareto"]["group"]) == front and front
