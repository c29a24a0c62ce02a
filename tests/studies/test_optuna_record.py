"""The Optuna record of one ended trial, from fixed per-epoch results: value at the best
epoch, PRUNED when it stopped before its planned epochs, seed and scores as user attributes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from mtl_tune.studies import TrialReport
from mtl_tune.studies.driver._optuna_mirror import OptunaMirror
from mtl_tune.studies.spec import Objective


def _row(epoch: int, overall: float, sst: float, planned: int = 4) -> dict:
    return {"training_iteration": epoch, "overall": overall, "sst_acc": sst, "para_acc": 0.6,
            "sts_corr": 0.8, "mean_score": 0.5,
            **TrialReport(patience=0, stale_epochs=0, group_patience=0, min_delta=0.0,
                          epochs_planned=planned, best_overall=overall).metrics(),
            "timestamp": 1_800_000_000 + 60 * epoch, "time_total_s": 60.0 * epoch}


def _mirror(tmp_path: Path, objectives: tuple[Objective, ...] = ()) -> OptunaMirror:
    return OptunaMirror(f"sqlite:///{tmp_path / 'optuna.db'}", "s", "overall", "max",
                        {"lr": FloatDistribution(1e-6, 1e-3, log=True)}, "main", objectives)


def test_a_trial_stopped_early_is_pruned_at_its_best_epoch(tmp_path: Path) -> None:
    mirror = _mirror(tmp_path)
    # stopped after 3 of 4 planned epochs; epochs 1 and 3 tie on overall, epoch 2 is last-best
    rows = [_row(1, 0.62, 0.30), _row(2, 0.55, 0.40), _row(3, 0.62, 0.35)]
    frozen = mirror.frozen_trial("t1", {"lr": 1e-4, "seed": 7, "epochs": 4}, rows)
    assert frozen is not None
    assert frozen.state == TrialState.PRUNED
    # the best epoch by overall, the earliest of a tie, with that epoch's scores
    assert frozen.values == [0.62] and frozen.user_attrs["best_epoch"] == 1
    assert frozen.user_attrs["sst_acc"] == 0.30 and frozen.user_attrs["epochs"] == 3
    # the seed is a user attribute, not a parameter; the searched key is
    assert frozen.params == {"lr": 1e-4} and frozen.user_attrs["seed"] == 7
    assert frozen.intermediate_values == {1: 0.62, 2: 0.55, 3: 0.62}
    # its own times: ended at the last result, started time_total_s before
    assert frozen.datetime_complete == datetime.fromtimestamp(1_800_000_180)
    assert frozen.datetime_start == datetime.fromtimestamp(1_800_000_000)
    study = mirror.study()
    assert mirror.add(study, [("t1", {"lr": 1e-4, "seed": 7}, rows)]) == 1
    # once only, by Ray trial id
    assert mirror.add(study, [("t1", {"lr": 1e-4, "seed": 7}, rows)]) == 0
    assert study.metric_names == ["overall"] and study.trials[0].state == TrialState.PRUNED


def test_a_trial_that_ran_its_epochs_is_complete(tmp_path: Path) -> None:
    rows = [_row(1, 0.5, 0.3, planned=2), _row(2, 0.6, 0.4, planned=2)]
    frozen = _mirror(tmp_path).frozen_trial("t2", {"lr": 1e-4}, rows)
    assert frozen is not None and frozen.state == TrialState.COMPLETE and frozen.values == [0.6]
    # a restored trial reports its later epochs again: the last report of an epoch counts
    again = _mirror(tmp_path).frozen_trial("t2", {"lr": 1e-4}, [*rows, _row(2, 0.7, 0.4, 2)])
    assert again is not None and again.values == [0.7]
    # no epoch with the metric: nothing to record
    assert _mirror(tmp_path).frozen_trial("t3", {}, [{"training_iteration": 1}]) is None


def test_several_objectives_are_taken_at_the_scalars_best_epoch(tmp_path: Path) -> None:
    mirror = _mirror(tmp_path, (Objective("sst_acc"), Objective("sts_corr", "min")))
    rows = [_row(1, 0.5, 0.45), _row(2, 0.6, 0.30)]
    frozen = mirror.frozen_trial("t4", {"lr": 1e-4}, rows)
    # epoch 2 is best by overall, though epoch 1 has the better SST
    assert frozen is not None and frozen.values == [0.30, 0.8]
    study = mirror.study()
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE,
                                optuna.study.StudyDirection.MINIMIZE]
    assert study.metric_names == ["sst_acc", "sts_corr"]
    mirror.add(study, [("t4", {"lr": 1e-4}, rows)])
    assert study.trials[0].values == pytest.approx([0.30, 0.8])


def test_a_seed_group_is_one_trial_of_its_seeds_means(tmp_path: Path) -> None:
    objectives = (Objective("sst_acc"), Objective("overall"))
    mirror = OptunaMirror(f"sqlite:///{tmp_path / 'optuna.db'}", "s", "overall", "max",
                          {"lr": FloatDistribution(1e-6, 1e-3, log=True)}, "main", objectives,
                          seeds=3)
    config = {"lr": 1e-4, "seed_group": "g1"}
    seed0 = [_row(1, 0.60, 0.30, planned=2), _row(2, 0.50, 0.50, planned=2)]
    seed1 = [_row(1, 0.50, 0.40, planned=2), _row(2, 0.64, 0.20, planned=2)]
    members = [("a", {**config, "seed": 0}, seed0), ("b", {**config, "seed": 1}, seed1),
               ("c", {**config, "seed": 2}, None)]  # seed 2 errored: left out of the means
    frozen = mirror.frozen_group("g1", members)
    assert frozen is not None and frozen.state == TrialState.COMPLETE
    # means per epoch: overall 0.55 then 0.57, so epoch 2; every objective is a mean there
    assert frozen.user_attrs["best_epoch"] == 2
    assert frozen.values == pytest.approx([0.35, 0.57])
    assert frozen.intermediate_values == pytest.approx({1: 0.55, 2: 0.57})
    assert frozen.params == {"lr": 1e-4}
    assert frozen.user_attrs["seed_scores"] == {"0": pytest.approx(_scores(seed0[1])),
                                                "1": pytest.approx(_scores(seed1[1]))}
    assert frozen.user_attrs["seeds"] == [0, 1, 2] and frozen.user_attrs["errored_seeds"] == 1
    study = mirror.study()
    assert mirror.add_groups(study, {"g1": members}) == 1
    assert mirror.add_groups(study, {"g1": members}) == 0  # once, by group id
    assert study.trials[0].user_attrs["ray_trial_ids"] == ["a", "b", "c"]


def test_a_seed_stopped_before_it_reported_is_left_out_of_its_groups_record(
    tmp_path: Path,
) -> None:
    mirror = OptunaMirror(f"sqlite:///{tmp_path / 'optuna.db'}", "s", "overall", "max",
                          {"lr": FloatDistribution(1e-6, 1e-3, log=True)}, "main", seeds=2)
    config = {"lr": 1e-4, "seed_group": "g1"}
    seed0 = [_row(1, 0.60, 0.30, planned=2), _row(2, 0.50, 0.50, planned=2)]
    # Tune's result of a trial stopped before its first epoch: its id and nothing else
    members = [("a", {**config, "seed": 0}, seed0), ("b", {**config, "seed": 1},
                                                     [{"trial_id": "b"}])]
    frozen = mirror.frozen_group("g1", members)
    assert frozen is not None and frozen.user_attrs["best_epoch"] == 1
    assert frozen.values == pytest.approx([0.60])
    assert frozen.user_attrs["seed_scores"] == {"0": pytest.approx(_scores(seed0[0]))}
    assert frozen.user_attrs["errored_seeds"] == 0
    assert frozen.user_attrs["unreported_seeds"] == 1


def _scores(row: dict) -> dict:
    return {k: row[k] for k in ("sst_acc", "para_acc", "sts_corr", "overall", "mean_score")}


def test_the_record_names_the_best_epochs_checkpoint(tmp_path: Path) -> None:
    from mtl_tune.studies.driver._optuna_mirror import with_checkpoints

    trial_dir = tmp_path / "trial"
    rows = [{**_row(1, 0.5, 0.3), "checkpoint_dir_name": "checkpoint_000000"},
            {**_row(2, 0.7, 0.4), "checkpoint_dir_name": "checkpoint_000001"},
            _row(3, 0.6, 0.4)]  # an epoch that saved no checkpoint
    located = with_checkpoints(rows, trial_dir)
    assert [r.get("checkpoint") for r in located] == [
        str(trial_dir / "checkpoint_000000"), str(trial_dir / "checkpoint_000001"), None]
    frozen = _mirror(tmp_path).frozen_trial("t1", {"lr": 1e-4}, located)
    assert frozen is not None
    assert frozen.user_attrs["checkpoint"] == str(trial_dir / "checkpoint_000001")


def test_the_mirror_reads_the_study_once_however_many_trials_it_adds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # reading every trial of the study to add one made each addition cost more than the last
    import pickle

    mirror = _mirror(tmp_path)
    study = mirror.study()
    rows = [_row(1, 0.62, 0.30)]
    reads: list[int] = []
    get_trials = optuna.Study.get_trials
    monkeypatch.setattr(optuna.Study, "get_trials",
                        lambda self, *a, **k: reads.append(1) or get_trials(self, *a, **k))
    for i in range(5):
        assert mirror.add(study, [(f"t{i}", {"lr": 1e-4}, rows)]) == 1
    assert mirror.add(study, [("t0", {"lr": 1e-4}, rows)]) == 0  # still once, by Ray id
    assert len(reads) == 1
    # a resumed driver's mirror (unpickled with the experiment) reads it once again
    resumed = pickle.loads(pickle.dumps(mirror))
    assert resumed.add(resumed.study(), [("t3", {"lr": 1e-4}, rows)]) == 0
    assert len(reads) == 2 and len(study.trials) == 5
