"""Seed-aware early stopping on a fake trial runner: groups promoted or stopped on their mean at
ASHA's rungs and by patience, faster seeds paused, never a seed stopped alone; the decisions
survive a new scheduler (a resumed driver) through the study's log."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket
from ray.tune.search import Searcher

from mtl_tune.studies import SEED_GROUP_KEY, TrialReport
from mtl_tune.studies.driver._group_scheduler import SeedGroupScheduler
from mtl_tune.studies.driver._seed_group_search import SeedGroupSearch
from mtl_tune.studies.spec._plan import asha_rungs
from mtl_tune.studies.store._group_log import read_group_events

PAUSE, STOP, CONTINUE = TrialScheduler.PAUSE, TrialScheduler.STOP, TrialScheduler.CONTINUE


@dataclass
class FakeTrial:
    trial_id: str
    config: dict[str, Any]
    status: str = Trial.RUNNING
    last_result: dict[str, Any] = field(default_factory=dict)  # as Tune saved it

    def set_status(self, status: str) -> None:
        self.status = status


@dataclass
class FakeRunner:
    """Applies the scheduler's decisions the way Tune's controller does."""

    scheduler: SeedGroupScheduler
    trials: list[FakeTrial] = field(default_factory=list)
    actions: list[tuple[str, int, str]] = field(default_factory=list)  # (trial, epoch, action)

    def add(
        self, trial_id: str, group: str, status: str = Trial.RUNNING, epoch: int = 0
    ) -> FakeTrial:
        """Adds a trial; `epoch`: the last one Tune's saved state holds for a restored one."""
        last = {"training_iteration": epoch} if epoch else {}
        trial = FakeTrial(trial_id, {SEED_GROUP_KEY: group, "seed": int(trial_id[-1])}, status,
                          last)
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)  # type: ignore[arg-type]
        return trial

    def get_trials(self) -> list[FakeTrial]:
        return self.trials

    def stop_trial(self, trial: FakeTrial) -> None:
        # Tune's callbacks read the folder of the trial they end, which one that never
        # started lacks (RuntimeError: "... without setting trial_dir_name")
        assert trial.last_result, f"{trial.trial_id} stopped before it ever started"
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)  # type: ignore[arg-type]
        trial.status = Trial.TERMINATED

    def report(self, trial_id: str, epoch: int, overall: float, planned: int = 4,
               patience: int = 0) -> str:
        trial = self.trial(trial_id)
        assert trial.status == Trial.RUNNING, f"{trial_id} reported while {trial.status}"
        result = {"training_iteration": epoch, "overall": overall, **TrialReport(
            patience=0, stale_epochs=0, group_patience=patience, min_delta=0.0,
            epochs_planned=planned, best_overall=overall).metrics()}
        action = self.scheduler.on_trial_result(self, trial, result)  # type: ignore[arg-type]
        trial.last_result = result
        self.actions.append((trial_id, epoch, action))
        if action == PAUSE:
            trial.status = Trial.PAUSED
        elif action == STOP or epoch == planned:
            trial.status = Trial.TERMINATED
            self.scheduler.on_trial_complete(self, trial, result)  # type: ignore[arg-type]
        return action

    def run_next(self) -> str | None:
        """Starts the trial the scheduler chooses, as Tune does between results."""
        trial = self.scheduler.choose_trial_to_run(self)  # type: ignore[arg-type]
        if trial is None:
            return None
        trial.status = Trial.RUNNING
        return trial.trial_id

    def start_pending(self) -> list[str]:
        """Starts every PENDING trial, as Tune's controller does after the scheduler's choice
        (resources permitting); returns their ids."""
        started = [t for t in self.trials if t.status == Trial.PENDING]
        for trial in started:
            trial.status = Trial.RUNNING
        return [t.trial_id for t in started]

    def trial(self, trial_id: str) -> FakeTrial:
        return next(t for t in self.trials if t.trial_id == trial_id)


def _scheduler(log: Path, rungs: tuple[int, ...] = (1, 2), max_t: int = 4) -> SeedGroupScheduler:
    return SeedGroupScheduler(log, "overall", "max", seeds=2, rungs=rungs, reduction_factor=2,
                              max_t=max_t)


def _three_groups(runner: FakeRunner) -> None:
    for group in "abc":
        runner.add(f"{group}0", group)
        runner.add(f"{group}1", group)


def _decisions(log: Path) -> list[tuple[str, int, str, float]]:
    return [(e["group"], e["epoch"], e["decision"], round(e["mean"], 4))
            for e in read_group_events(log) if e["event"] == "decision"]


@pytest.mark.parametrize(("grace", "factor", "max_t"), [(1, 2, 4), (1, 3, 10), (2, 2, 16),
                                                         (1, 4, 3)])
def test_rungs_are_ashas_milestones(grace: int, factor: int, max_t: int) -> None:
    bracket = _Bracket(grace, max_t, factor, 0)
    milestones = sorted(m for m, _ in bracket._rungs if m < max_t)
    assert list(asha_rungs(grace, factor, max_t)) == milestones


def test_groups_are_promoted_and_stopped_on_their_mean(tmp_path: Path) -> None:
    """3 configurations x 2 seeds, reduction factor 2, rungs at epochs 1 and 2 (hand-worked).

    Rung 1: A (0.6, 0.5) mean 0.55 is first: continues. B (0.4, 0.5) mean 0.45 against the
    median of {0.55}: stopped. C (0.7, 0.6) mean 0.65 against the median of {0.55, 0.45} = 0.50:
    continues. Rung 2: A (0.62, 0.58) mean 0.60 first: continues; C (0.5, 0.5) mean 0.50
    against 0.60: stopped. A runs to its last epoch.
    """
    log = tmp_path / "groups.jsonl"
    runner = FakeRunner(_scheduler(log))
    _three_groups(runner)
    # the first seed at a rung waits, paused, whatever its own score
    assert runner.report("a0", 1, 0.6) == PAUSE
    assert runner.report("a1", 1, 0.5) == CONTINUE
    assert runner.run_next() == "a0"  # promoted: it runs again before anything new
    assert runner.report("b0", 1, 0.4) == PAUSE  # alone it would be the worst: not stopped
    assert runner.report("b1", 1, 0.5) == STOP
    assert runner.run_next() is None  # b0 was stopped with its group, not resumed
    assert runner.trial("b0").status == Trial.TERMINATED
    assert runner.report("c0", 1, 0.7) == PAUSE
    assert runner.report("c1", 1, 0.6) == CONTINUE
    assert runner.run_next() == "c0"
    assert runner.report("a0", 2, 0.62) == PAUSE
    assert runner.report("a1", 2, 0.58) == CONTINUE
    assert runner.run_next() == "a0"
    assert runner.report("c1", 2, 0.5) == PAUSE
    assert runner.report("c0", 2, 0.5) == STOP
    assert runner.run_next() is None and runner.trial("c1").status == Trial.TERMINATED
    # no rung at 3, and 4 is max_t, where ASHA ends a trial: no more waiting
    assert runner.report("a0", 3, 0.6) == CONTINUE and runner.report("a1", 3, 0.6) == CONTINUE
    assert runner.report("a0", 4, 0.6) == STOP and runner.report("a1", 4, 0.6) == STOP
    assert _decisions(log) == [("a", 1, "continue", 0.55), ("b", 1, "stop", 0.45),
                               ("c", 1, "continue", 0.65), ("a", 2, "continue", 0.6),
                               ("c", 2, "stop", 0.5)]
    cutoffs = [e["cutoff"] for e in read_group_events(log) if e["event"] == "decision"]
    assert cutoffs == [None, 0.55, pytest.approx(0.5), None, 0.6]
    # no seed stopped while its sibling continued: both seeds of a group end at one epoch
    last = {}
    for trial, epoch, _ in runner.actions:
        last[trial] = max(last.get(trial, 0), epoch)
    assert last == {"a0": 4, "a1": 4, "b0": 1, "b1": 1, "c0": 2, "c1": 2}


def test_a_minimised_metric_stops_the_group_with_the_larger_mean(tmp_path: Path) -> None:
    log = tmp_path / "groups.jsonl"
    scheduler = SeedGroupScheduler(log, "overall", "min", seeds=2, rungs=(1,),
                                   reduction_factor=2, max_t=3)
    runner = FakeRunner(scheduler)
    _three_groups(runner)
    runner.report("a0", 1, 0.2), runner.report("a1", 1, 0.4)  # mean 0.3: the first, kept
    runner.report("b0", 1, 0.1)
    assert runner.report("b1", 1, 0.3) == CONTINUE  # mean 0.2 < 0.3: better when minimised
    runner.report("c0", 1, 0.5)
    # mean 0.6, above the cutoff of a's and b's means: the worse group when minimising
    assert runner.report("c1", 1, 0.7) == STOP
    assert _decisions(log) == [("a", 1, "continue", 0.3), ("b", 1, "continue", 0.2),
                               ("c", 1, "stop", 0.6)]
    # the stopped group's seeds both end: the paused one is never run again; the seeds the
    # other groups paused run on
    ran = []
    while (started := runner.run_next()) is not None:
        ran.append(started)
    assert sorted(ran) == ["a0", "b0"]
    assert runner.trial("c0").status == runner.trial("c1").status == Trial.TERMINATED


def test_patience_is_decided_on_the_group_mean(tmp_path: Path) -> None:
    """Patience 2: seed 0 alone gets no better after epoch 1, but the mean does until epoch 3;
    epochs 4 and 5 are no better than 3, so the group stops at 5, both seeds together."""
    log = tmp_path / "groups.jsonl"
    runner = FakeRunner(_scheduler(log, rungs=(), max_t=8))
    runner.add("a0", "a"), runner.add("a1", "a")
    seed0 = [0.7, 0.6, 0.6, 0.6, 0.6]
    seed1 = [0.3, 0.5, 0.7, 0.6, 0.6]
    for epoch, (v0, v1) in enumerate(zip(seed0, seed1, strict=True), start=1):
        assert runner.report("a0", epoch, v0, planned=8, patience=2) == PAUSE
        action = runner.report("a1", epoch, v1, planned=8, patience=2)
        assert action == (STOP if epoch == 5 else CONTINUE)
        if action == CONTINUE:
            assert runner.run_next() == "a0"
    assert runner.run_next() is None and runner.trial("a0").status == Trial.TERMINATED
    stale = [(e["epoch"], e["stale"], e["why"]) for e in read_group_events(log)
             if e["event"] == "decision"]
    assert stale == [(1, 0, ""), (2, 0, ""), (3, 0, ""), (4, 1, ""), (5, 2, "patience")]


def test_a_seed_that_errors_leaves_the_decision_to_its_siblings(tmp_path: Path) -> None:
    log = tmp_path / "groups.jsonl"
    runner = FakeRunner(_scheduler(log))
    runner.add("a0", "a"), runner.add("a1", "a")
    assert runner.report("a0", 1, 0.6) == PAUSE
    runner.trial("a1").status = Trial.ERROR
    runner.scheduler.on_trial_error(runner, runner.trial("a1"))  # type: ignore[arg-type]
    assert _decisions(log) == [("a", 1, "continue", 0.6)]
    assert runner.run_next() == "a0"


def test_a_resumed_driver_keeps_the_waiting_seed_and_the_rung_record(tmp_path: Path) -> None:
    log = tmp_path / "groups.jsonl"
    runner = FakeRunner(_scheduler(log))
    _three_groups(runner)
    runner.report("a0", 1, 0.6), runner.report("a1", 1, 0.5)  # A recorded at rung 1
    runner.report("b0", 1, 0.4)  # b0 waits for b1 when the driver dies
    # a new driver: a scheduler unpickled from the tuner (no state), Tune's trials re-added
    # as PENDING (Tune restores unfinished trials as pending) at the epochs it saved
    restored = FakeRunner(_scheduler(log))
    for name, epoch in (("a0", 1), ("a1", 1), ("b0", 1), ("b1", 0), ("c0", 0), ("c1", 0)):
        restored.add(name, name[0], status=Trial.PENDING, epoch=epoch)
    # b0, which waited at its rung, is re-added as paused: Tune, which starts every pending
    # trial after the scheduler's choice, passes it by (it trained on past its rung before)
    assert restored.trial("b0").status == Trial.PAUSED
    # b0 still waits at its rung: the first trial to run is its sibling, which completes it
    assert restored.run_next() == "b1"
    # B is judged against A's mean recorded by the first driver: 0.45 < 0.55, stopped
    assert restored.report("b1", 1, 0.5) == STOP
    assert restored.run_next() == "a0"  # b0 is stopped on the way, never run
    assert restored.trial("b0").status == Trial.TERMINATED
    assert _decisions(log)[-1] == ("b", 1, "stop", 0.45)


def test_a_seed_of_a_group_stopped_before_the_kill_never_trains_again(tmp_path: Path) -> None:
    log = tmp_path / "groups.jsonl"
    runner = FakeRunner(_scheduler(log))
    _three_groups(runner)
    runner.report("a0", 1, 0.6), runner.report("a1", 1, 0.5)
    runner.report("b0", 1, 0.4)  # waits ...
    runner.report("b1", 1, 0.5)  # ... and its group is stopped; the driver dies before Tune
    # stops b0
    restored = FakeRunner(_scheduler(log))
    for name, epoch in (("a0", 1), ("a1", 1), ("b0", 1), ("c0", 0), ("c1", 0)):
        restored.add(name, name[0], status=Trial.PENDING, epoch=epoch)
    restored.add("b1", "b", status=Trial.TERMINATED, epoch=1)
    # Tune starts every pending trial: not b0, whose group's logged decision stopped it
    assert "b0" not in restored.start_pending()
    restored.run_next()
    # the scheduler stops it without running it
    assert restored.trial("b0").status == Trial.TERMINATED


def test_a_seed_whose_start_tunes_saved_state_lost_trains_up_to_its_groups_stop(
    tmp_path: Path,
) -> None:
    log = tmp_path / "groups.jsonl"
    runner = FakeRunner(_scheduler(log))
    _three_groups(runner)
    runner.report("a0", 1, 0.6), runner.report("a1", 1, 0.5)
    runner.report("b0", 1, 0.4)
    runner.report("b1", 1, 0.5)  # B stopped at rung 1; the driver dies before Tune saved
    # that b1 ever started (its state is saved every few seconds, the log at once)
    restored = FakeRunner(_scheduler(log))
    for name, epoch in (("a0", 1), ("a1", 1), ("b0", 1), ("b1", 0), ("c0", 0), ("c1", 0)):
        restored.add(name, name[0], status=Trial.PENDING, epoch=epoch)
    # b1 trains again up to its group's stop, as in the uninterrupted run; it is not stopped
    # unstarted (Tune would fail on its missing folder, and it would end with no epochs)
    assert "b1" in restored.start_pending() + [restored.run_next()]
    assert restored.report("b1", 1, 0.5) == STOP
    restored.run_next()
    assert restored.trial("b0").status == Trial.TERMINATED
    assert _decisions(log).count(("b", 1, "stop", 0.45)) == 1  # decided once


def test_a_seed_behind_its_groups_stop_trains_up_to_it(tmp_path: Path) -> None:
    log = tmp_path / "groups.jsonl"
    runner = FakeRunner(_scheduler(log))
    _three_groups(runner)
    for group, score in (("a", 0.6), ("b", 0.7)):  # A and B continue at rung 1
        runner.report(f"{group}0", 1, score), runner.report(f"{group}1", 1, score)
        assert runner.run_next() == f"{group}0"  # the seed that waited
    runner.report("a0", 2, 0.8), runner.report("a1", 2, 0.8)  # A recorded at rung 2
    runner.report("b0", 2, 0.5), runner.report("b1", 2, 0.5)  # B stopped at rung 2
    # Tune's saved state still has b1 at epoch 1 when the driver dies
    restored = FakeRunner(_scheduler(log))
    for name, epoch in (("a0", 2), ("a1", 2), ("b0", 2), ("b1", 1), ("c0", 0), ("c1", 0)):
        restored.add(name, name[0], status=Trial.PENDING, epoch=epoch)
    assert "b1" in restored.start_pending() + [restored.run_next()]
    # b1 trains its second epoch, as in the uninterrupted run, and stops there
    assert restored.report("b1", 2, 0.5) == STOP
    restored.run_next()
    assert restored.trial("b0").status == Trial.TERMINATED
    assert restored.trial("b0").last_result["training_iteration"] == 2


class _ListSearcher(Searcher):
    """Suggests the next configuration of a list and remembers what it was told."""

    def __init__(self, configs: list[dict[str, Any]]) -> None:
        super().__init__(metric="overall", mode="max")
        self.configs, self.told = list(configs), {}

    def suggest(self, trial_id: str) -> dict | None:
        return self.configs.pop(0) if self.configs else Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        self.told[trial_id] = (result, error)


def test_each_configuration_runs_once_per_seed_and_the_searcher_hears_the_group_mean() -> None:
    inner = _ListSearcher([{"lr": 1e-4}, {"lr": 1e-3}])
    search = SeedGroupSearch(inner, seeds=(0, 1), select_metric="overall", select_mode="max")
    configs = [search.suggest(f"t{i}") for i in range(4)]
    assert configs == [
        {"lr": lr, "seed": seed, SEED_GROUP_KEY: group}
        for lr, group in ((1e-4, "t0"), (1e-3, "t2")) for seed in (0, 1)
    ]
    assert search.suggest("t4") == Searcher.FINISHED
    for trial, scores in (("t0", (0.5, 0.7)), ("t1", (0.7, 0.6))):
        for epoch, overall in enumerate(scores, start=1):
            search.on_trial_result(trial, {"training_iteration": epoch, "overall": overall,
                                           "sst_acc": overall / 2})
    search.on_trial_complete("t0")
    assert inner.told == {}  # t1 has not ended: the group is not judged yet
    search.on_trial_complete("t1")
    # per epoch means: 0.60 then 0.65, so epoch 2's means are what the searcher learns
    result, error = inner.told["t0"]
    assert not error and result["training_iteration"] == 2
    assert result["overall"] == pytest.approx(0.65) and result["sst_acc"] == pytest.approx(0.325)
    # a group whose seeds all errored is an error to the searcher
    search.on_trial_complete("t2", error=True), search.on_trial_complete("t3", error=True)
    assert inner.told["t2"] == (None, True)


def test_the_group_search_state_survives_tunes_save_and_restore(tmp_path: Path) -> None:
    inner = _ListSearcher([{"lr": 1e-4}])
    search = SeedGroupSearch(inner, seeds=(0, 1), select_metric="overall", select_mode="max")
    search.suggest("t0")
    state = search.get_state()
    again = SeedGroupSearch(_ListSearcher([]), seeds=(0, 1), select_metric="overall",
                            select_mode="max")
    again.set_state(state)
    # the second seed of the group is handed out after a restore, not a new configuration
    assert again.suggest("t1") == {"lr": 1e-4, "seed": 1, SEED_GROUP_KEY: "t0"}


def test_a_line_half_written_by_a_killed_driver_is_skipped_on_replay(tmp_path: Path) -> None:
    log = tmp_path / "groups.jsonl"
    runner = FakeRunner(_scheduler(log))
    runner.add("a0", "a"), runner.add("a1", "a")
    runner.report("a0", 1, 0.6), runner.report("a1", 1, 0.5)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write('{"event": "decision", "group": "a", "ep')  # killed mid-line
    ledger = _scheduler(log).ledger
    # the whole lines are replayed: A's rung 1 record, nothing from the torn one
    assert ledger.recorded == {1: {"a": pytest.approx(0.55)}}
    assert ledger.groups["a"].last_point == 1


def test_choosing_a_trial_looks_only_at_the_trials_not_ended(tmp_path: Path) -> None:
    # Tune's whole list of trials grows with the study: scanning it on every choice made the
    # scheduler's cost per event grow with it
    runner = FakeRunner(_scheduler(tmp_path / "groups.jsonl"))
    for i in range(3):
        runner.add(f"old{i}", f"o{i}", status=Trial.TERMINATED)
    waiting = runner.add("new1", "n", status=Trial.PENDING)

    def whole_list() -> list[FakeTrial]:
        raise AssertionError("the scheduler scanned every trial of the study")

    runner.get_trials = whole_list  # type: ignore[method-assign]
    assert runner.scheduler.choose_trial_to_run(runner) is waiting  # type: ignore[arg-type]
    # ended, it is no longer a candidate; a pickled scheduler (Tune's save) keeps no trial
    waiting.status = Trial.TERMINATED
    runner.scheduler.on_trial_complete(runner, waiting, {})  # type: ignore[arg-type]
    assert runner.scheduler.choose_trial_to_run(runner) is None  # type: ignore[arg-type]
    assert pickle.loads(pickle.dumps(runner.scheduler))._open == {}
