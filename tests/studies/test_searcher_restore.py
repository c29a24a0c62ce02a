"""A driver killed between Tune's uploads of its experiment state and its searcher's state: the
resumed searchers agree with the trials Tune restored, so no seed is waited on forever, none is
run twice and no configuration is skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher

from mtl_tune.studies.driver._conditional_search import ConfigurationList
from mtl_tune.studies.driver._relocated_search import RelocatedGrid, RelocatedSearch
from mtl_tune.studies.driver._seed_group_search import SeedGroupSearch
from mtl_tune.studies.spec import SEED_GROUP_KEY
from mtl_tune.studies.store import read_trials
from tests.studies.conftest import ASHA, launch_and_kill, resume_cli, write_spec
from tests.studies.test_group_scheduler import _ListSearcher
from tests.studies.test_simulate import REHEARSAL_SPACE


def _groups(lrs: list[float]) -> SeedGroupSearch:
    return SeedGroupSearch(_ListSearcher([{"lr": lr} for lr in lrs]), seeds=(0, 1),
                           select_metric="overall", select_mode="max")


def _end(search: Searcher, trial: str, overall: float) -> None:
    search.on_trial_result(trial, {"training_iteration": 1, "overall": overall})
    search.on_trial_complete(trial)


def _seed(group: str, seed: int, lr: float, status: str = "RUNNING") -> tuple[str, dict]:
    return status, {"lr": lr, "seed": seed, SEED_GROUP_KEY: group}


def test_a_seed_tune_lost_is_handed_out_again_and_its_group_is_judged_whole() -> None:
    search = _groups([1e-4, 1e-3])
    search.suggest("a0"), search.suggest("a1")
    # Tune's experiment state is a save older than the searcher's: it never saw a1
    search.reconcile({"a0": _seed("a0", 0, 1e-4)})
    assert search.suggest("x") == {"lr": 1e-4, "seed": 1, SEED_GROUP_KEY: "a0"}
    assert search.suggest("b0") == {"lr": 1e-3, "seed": 0, SEED_GROUP_KEY: "b0"}
    _end(search, "a0", 0.5)
    assert search.searcher.told == {}  # the group waits for its seed handed out again ...
    search.on_trial_complete("a1")  # ... not for the lost one, should Tune ever name it
    assert search.searcher.told == {}
    _end(search, "x", 0.7)
    result, error = search.searcher.told["a0"]
    assert not error and result["overall"] == pytest.approx(0.6)


def test_a_seed_the_searcher_never_made_joins_its_group_and_is_not_made_twice() -> None:
    search = _groups([1e-4, 1e-3])
    search.suggest("a0")
    # the searcher's state is a save older than Tune's, which holds both seeds of group a0
    search.reconcile({"a0": _seed("a0", 0, 1e-4), "a1": _seed("a0", 1, 1e-4)})
    assert search.suggest("b0") == {"lr": 1e-3, "seed": 0, SEED_GROUP_KEY: "b0"}
    _end(search, "a0", 0.5), _end(search, "a1", 0.9)
    assert search.searcher.told["a0"][0]["overall"] == pytest.approx(0.7)


def test_a_group_the_searcher_never_made_is_taken_up_from_tunes_trials() -> None:
    search = _groups([1e-3])
    # a group of which Tune holds one finished seed, the other lost with the searcher's state
    search.reconcile({"g0": _seed("g0", 0, 3e-4, "TERMINATED"),
                      "h0": _seed("h0", 0, 5e-4, "TERMINATED"),
                      "h1": _seed("h0", 1, 5e-4, "TERMINATED")})
    again = search.suggest("g1")
    assert again == {"lr": 3e-4, "seed": 1, SEED_GROUP_KEY: "g0"}
    # group h0 had ended whole: nothing of it is handed out or heard again
    assert search.suggest("n0") == {"lr": 1e-3, "seed": 0, SEED_GROUP_KEY: "n0"}
    _end(search, "g1", 0.4)
    result, error = search.searcher.told["g0"]
    assert not error and result["overall"] == pytest.approx(0.4)
    assert "h0" not in search.searcher.told


class _Optuna(_ListSearcher):
    """Stands for the Optuna searcher: the innermost searcher, told of each trial's end."""


def test_the_restored_chain_counts_tunes_trials_and_fails_the_lost_one_in_the_searcher() -> None:
    inner = _Optuna([{"lr": 1e-4}, {"lr": 2e-4}, {"lr": 3e-4}])
    limiter = ConcurrencyLimiter(inner, max_concurrent=2)
    generator = RelocatedSearch(limiter)
    limiter.suggest("t0"), limiter.suggest("t1")
    limiter.on_trial_complete("t0")
    limiter.suggest("t2")
    generator._counter = 3
    # Tune holds t0 (ended) and t1; t2 was made after its last save
    generator.reconcile({"t0": ("TERMINATED", {"lr": 1e-4}), "t1": ("PENDING", {"lr": 2e-4})})
    assert generator._counter == 2  # the next trial made is the study's third, not its fourth
    assert limiter.live_trials == {"t1"} and limiter.num_unfinished_live_trials == 1
    assert inner.told["t2"] == (None, True)  # TPE never waits on the lost trial


def test_a_configuration_list_hands_out_again_what_tune_lost() -> None:
    configs = ConfigurationList([{"lr": 1e-4}, {"lr": 2e-4}, {"lr": 3e-4}], "overall", "max")
    generator = RelocatedSearch(ConcurrencyLimiter(configs, max_concurrent=2))
    configs.suggest("t0"), configs.suggest("t1")
    generator.reconcile({"t0": ("RUNNING", {"lr": 1e-4})})
    assert configs.suggest("t2") == {"lr": 2e-4}


def _noop(config: dict) -> None:
    pass


def test_a_grid_makes_again_the_points_tune_lost(tmp_path: Path) -> None:
    tune.register_trainable("noop", _noop)
    grid = RelocatedGrid(max_concurrent=2)
    grid.add_configurations({"grid": {
        "run": "noop", "config": {"lr": tune.grid_search([1, 2, 3]), "seed": 0},
        "storage_path": str(tmp_path)}})
    made = [grid.next_trial(), grid.next_trial()]
    grid.on_trial_complete(made[0].trial_id)
    made.append(grid.next_trial())
    grid.on_trial_complete(made[1].trial_id)
    assert grid.next_trial() is None and grid.is_finished()  # every point made
    # Tune's last save of the trials holds the first two: the third point is made again, and
    # the second (which will run again) holds one of the two places
    grid.reconcile({made[0].trial_id: ("TERMINATED", made[0].config),
                    made[1].trial_id: ("PENDING", made[1].config)})
    assert not grid.is_finished()
    again = grid.next_trial()
    assert again.config == {"lr": 3, "seed": 0} and again.trial_id != made[2].trial_id
    assert grid.next_trial() is None  # two live trials: the second and the point made again
    grid.on_trial_complete(again.trial_id)
    assert grid.next_trial() is None and grid.is_finished()


TOP = """
name = "lost-seed"
trainables = ["it10-warmup-decay"]
search = "optuna"
num_samples = 2
seeds = 2
max_concurrent = 2
optuna_seed = 0
"""


def _newest_state(experiment: Path) -> Path | None:
    states = sorted(experiment.glob("experiment_state-*.json"))
    return states[-1] if states else None


def _both_seeds_made(experiment: Path) -> list[Any] | None:
    """The saved experiment state's trials once it holds a group's two seeds, none of which
    reported yet (a kill then loses the second seed entirely); None before."""
    state = _newest_state(experiment)
    try:
        trials = json.loads(state.read_text())["trial_data"] if state else []
    except (OSError, ValueError):  # being written
        return None
    results = [json.loads(metadata).get("last_result") or {} for _, metadata in trials]
    if len(trials) != 2 or any("epoch" in r for r in results):
        return None
    return list(trials)


def test_a_seed_lost_between_tunes_uploads_is_run_again_on_resume(
    tmp_path: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    path = write_spec(tmp_path, TOP, {"epochs": 3}, REHEARSAL_SPACE + ASHA)
    root = tmp_path / "studies"
    experiment = root / "lost-seed" / "tune" / "main"
    trials = launch_and_kill(path, tiny_data_dir, root, ray_tmp,
                             lambda: _both_seeds_made(experiment),
                             extra=("--simulate", "--epoch-seconds", "0.5"))
    # the instant between Tune's two uploads: its experiment state one save older (without the
    # second seed) beside the searcher's newest state (which made it)
    state = _newest_state(experiment)
    assert state is not None
    saved = json.loads(state.read_text())
    lost = json.loads(trials[1][0])["trial_id"]
    saved["trial_data"] = trials[:1]
    state.write_text(json.dumps(saved))
    # with the seed never handed out again, its sibling waited at the rung for ever
    output = resume_cli("lost-seed", root, ray_tmp, tmp_path / "resume.log", timeout=240)
    assert "simulated study lost-seed: 4 of 4 planned trials finished, 0 errored" in output
    state = _newest_state(experiment)
    assert state is not None
    configs = [json.loads(t)["config"] for t, _ in json.loads(state.read_text())["trial_data"]]
    by_group: dict[str, list[int]] = {}
    for config in configs:
        by_group.setdefault(config[SEED_GROUP_KEY], []).append(config["seed"])
    # two groups, each run once on each seed, the lost trial's seed by a new trial
    assert sorted(sorted(seeds) for seeds in by_group.values()) == [[0, 1], [0, 1]]
    restored = {json.loads(t)["trial_id"] for t, _ in json.loads(state.read_text())["trial_data"]}
    assert lost not in restored
    # the study's record is Tune's four trials, each finished; the lost one is in no table
    assert {trial for _, trial in read_trials(root / "lost-seed")} == restored
