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
    from mtl_tune.studies.driver._optuna_trials import with_checkpoints

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


class _Ended:
    """A Tune trial as the mirror sees it when it ends: results in its folder's result.json."""

    def __init__(self, trial_id: str, folder: Path, config: dict, rows: list[dict]) -> None:
        import json

        self.trial_id, self.config, self.last_result = trial_id, config, rows[-1]
        self.path = self.local_path = str(folder / trial_id)
        Path(self.path).mkdir(parents=True)
        Path(self.path, "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


class _Saved:
    def __init__(self, status: str) -> None:
        self.status = status


class _View:
    saved: dict[str, _Saved] | None = None


def _recorded(mirror: OptunaMirror) -> list[str]:
    from mtl_tune.studies.spec import RAY_ID_ATTR

    return sorted(t.user_attrs[RAY_ID_ATTR] for t in mirror.study().get_trials(deepcopy=False))


def test_the_mirror_records_a_trial_once_tunes_saved_state_holds_it_ended(
    tmp_path: Path,
) -> None:
    # a trial Tune created and finished between two of its saves is forgotten by a resume
    # after a kill (suggested anew under another id): recorded on finishing, Optuna held a
    # trial the study did not (7 records for a study of 6)
    view = _View()
    mirror = OptunaMirror(f"sqlite:///{tmp_path / 'optuna.db'}", "s", "overall", "max",
                          {"lr": FloatDistribution(1e-6, 1e-3, log=True)}, "main",
                          saved_view=view)
    first = _Ended("a1", tmp_path, {"lr": 1e-4}, [_row(1, 0.6, 0.3), _row(4, 0.7, 0.4)])
    second = _Ended("b2", tmp_path, {"lr": 2e-4}, [_row(1, 0.5, 0.3)])
    mirror.on_trial_complete(0, [first, second], first)
    mirror.on_step_end(0, [first, second])
    assert _recorded(mirror) == []  # no copy of the saved state yet
    view.saved = {"a1": _Saved("RUNNING")}
    mirror.on_trial_complete(0, [first, second], second)
    mirror.on_step_end(0, [first, second])
    assert _recorded(mirror) == []  # saved running, and not saved at all
    view.saved = {"a1": _Saved("TERMINATED"), "b2": _Saved("RUNNING")}
    mirror.on_step_end(0, [first, second])
    assert _recorded(mirror) == ["a1"]
    trial = mirror.study().get_trials(deepcopy=False)[0]
    assert trial.value == 0.7 and trial.params == {"lr": 1e-4}  # as recorded on finishing
    mirror.on_experiment_end([first, second])  # Tune saved its state and waited: the rest
    assert _recorded(mirror) == ["a1", "b2"]


def test_a_seed_group_is_recorded_once_the_saved_state_holds_every_seed_ended(
    tmp_path: Path,
) -> None:
    from mtl_tune.studies.spec import SEED_GROUP_KEY

    view = _View()
    mirror = OptunaMirror(f"sqlite:///{tmp_path / 'optuna.db'}", "s", "overall", "max",
                          {"lr": FloatDistribution(1e-6, 1e-3, log=True)}, "main", seeds=2,
                          saved_view=view)
    seeds = [_Ended(f"s{i}", tmp_path, {"lr": 1e-4, "seed": i, SEED_GROUP_KEY: "g1"},
                    [_row(1, 0.6 + i / 10, 0.3)]) for i in range(2)]
    for seed in seeds:
        mirror.on_trial_complete(0, seeds, seed)
    view.saved = {"s0": _Saved("TERMINATED"), "s1": _Saved("RUNNING")}
    mirror.on_step_end(0, seeds)
    assert _recorded(mirror) == []
    view.saved = {"s0": _Saved("TERMINATED"), "s1": _Saved("ERROR")}  # an errored seed ended
    mirror.on_step_end(0, seeds)
    assert _recorded(mirror) == ["g1"]
    assert mirror.study().get_trials(deepcopy=False)[0].value == pytest.approx(0.65)


def test_the_mirror_asks_the_copy_it_asked_already_only_about_what_ended_since(
    tmp_path: Path,
) -> None:
    # at each of Tune's steps every waiting trial was looked up again in a copy that could
    # not have changed: 639,479 lookups at 1,000 trials against 15,942 at 100
    asked: list[str] = []

    class Copy(dict):
        def __getitem__(self, trial_id: str) -> _Saved:
            asked.append(trial_id)
            return super().__getitem__(trial_id)

    view = _View()
    mirror = OptunaMirror(f"sqlite:///{tmp_path / 'optuna.db'}", "s", "overall", "max",
                          {"lr": FloatDistribution(1e-6, 1e-3, log=True)}, "main",
                          saved_view=view)
    view.saved = Copy({"a1": _Saved("RUNNING")})
    trials = [_Ended(f"a{i}", tmp_path, {"lr": 1e-4}, [_row(1, 0.6, 0.3)]) for i in range(1, 4)]
    for trial in trials[:2]:
        mirror.on_trial_complete(0, trials, trial)
    mirror.on_step_end(0, trials)
    asked.clear()
    for _ in range(5):
        mirror.on_step_end(0, trials)
    assert asked == []  # the same copy: nothing new to ask
    mirror.on_trial_complete(0, trials, trials[2])
    mirror.on_step_end(0, trials)
    assert asked == ["a3"]  # what ended since, alone
    view.saved = Copy({f"a{i}": _Saved("TERMINATED") for i in range(1, 4)})  # a new copy
    mirror.on_step_end(0, trials)
    assert _recorded(mirror) == ["a1", "a2", "a3"]


def _population(tmp_path: Path, seeds: int = 1) -> OptunaMirror:
    return OptunaMirror(f"sqlite:///{tmp_path / 'optuna.db'}", "s", "overall", "max",
                        {"lr": FloatDistribution(1e-6, 1e-3, log=True)}, "main", seeds=seeds,
                        schedule_keys=("lr",))


def test_a_population_member_is_recorded_at_its_final_score(tmp_path: Path) -> None:
    # a member of population-based training: its best epoch (2) came from weights it later
    # replaced by a donor's; its score is its last epoch's, that epoch's checkpoint with it
    rows = [_row(1, 0.50, 0.30), {**_row(2, 0.70, 0.45), "checkpoint": "/s/c1"},
            _row(3, 0.60, 0.40), {**_row(4, 0.65, 0.42), "checkpoint": "/s/c3"}]
    frozen = _population(tmp_path).frozen_trial("m1", {"lr": 1e-4}, rows)
    assert frozen is not None and frozen.state == TrialState.COMPLETE
    assert frozen.values == [0.65] and frozen.user_attrs["sst_acc"] == 0.42
    assert frozen.user_attrs["scored_epoch"] == 4 and frozen.user_attrs["checkpoint"] == "/s/c3"
    assert frozen.user_attrs["best_epoch"] == 2  # still named, not scored
    # the same rows outside a population: the best epoch's
    plain = _mirror(tmp_path).frozen_trial("t1", {"lr": 1e-4}, rows)
    assert plain is not None and plain.values == [0.70] and "scored_epoch" not in plain.user_attrs
    assert plain.user_attrs["checkpoint"] == "/s/c1"


def test_a_population_of_seed_groups_records_each_group_at_its_final_mean(
    tmp_path: Path,
) -> None:
    config = {"lr": 1e-4, "seed_group": "g1"}
    seed0 = [_row(1, 0.60, 0.30, planned=2), _row(2, 0.50, 0.50, planned=2)]
    seed1 = [_row(1, 0.70, 0.40, planned=2), _row(2, 0.54, 0.20, planned=2)]
    members = [("a", {**config, "seed": 0}, seed0), ("b", {**config, "seed": 1}, seed1)]
    frozen = _population(tmp_path, seeds=2).frozen_group("g1", members)
    # means 0.65 then 0.52: the final mean, not the better first one, with its seeds' scores
    assert frozen is not None and frozen.values == pytest.approx([0.52])
    assert frozen.user_attrs["scored_epoch"] == 2 and frozen.user_attrs["best_epoch"] == 1
    assert frozen.user_attrs["seed_scores"] == {"0": pytest.approx(_scores(seed0[1])),
                                                "1": pytest.approx(_scores(seed1[1]))}
