"""`study confirm`: a finished search's best configurations re-trained on fresh seeds, as the
study's experiment `confirm`; killed and resumed like any other; `report search` shows the
score each was selected with beside what held on the fresh seeds."""

from __future__ import annotations

import dataclasses
import shutil
import statistics
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.platform.presets import resolve_config
from mtl_tune.platform.response_surface import simulated_scores
from mtl_tune.reports import report_search
from mtl_tune.studies import launch_study
from mtl_tune.studies.results import (
    ConfirmPlan,
    confirm_plan,
    confirm_scores,
    load_results,
    read_result_rows,
)
from mtl_tune.studies.spec import load_spec
from mtl_tune.studies.store import read_meta, read_trials, write_meta
from tests.studies.conftest import NO_SCHEDULER, launch_and_kill, resume_cli, write_spec

SEARCH = ('name = "pick"\ntrainables = ["it10-warmup-decay"]\nsearch = "optuna"\n'
          "num_samples = 3\nseeds = 2\nmax_concurrent = 2\noptuna_seed = 0")
SPACE = """
[space]
lr = { loguniform = [1e-5, 1e-3] }
dropout = { uniform = [0.1, 0.5] }
"""


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, tiny_data_dir: Path,
             ray_local: None) -> Path:
    """A finished simulated search: 3 configurations x seed groups of 2, 3 epochs of 0.3 s."""
    folder = tmp_path_factory.mktemp("confirm")
    path = write_spec(folder, SEARCH, {"epochs": 3, "data_dir": str(tiny_data_dir)},
                      SPACE + NO_SCHEDULER)
    outcome = launch_study(load_spec(str(path)), folder / "studies", path.read_text(),
                           verbose=0, simulate=True, epoch_seconds=0.3)
    assert outcome.finished == 6
    return folder / "studies" / "pick"


def _copy(searched: Path, tmp_path: Path) -> Path:
    root = tmp_path / "studies"
    shutil.copytree(searched, root / "pick")
    return root


def _scores(config: dict[str, Any], seed: int, epoch: int) -> float:
    """What a simulated trial of `config` on `seed` reports at `epoch`."""
    training = {k: v for k, v in config.items() if k != "seed_group"}
    resolved = resolve_config(None, {**training, "seed": seed})
    return float(simulated_scores(dataclasses.asdict(resolved), epoch)["overall"])


def _confirm_ended(folder: Path, count: int) -> int | None:
    ended = sum(r.state == "TERMINATED" for r in read_trials(folder).values()
                if r.experiment == "confirm")
    return ended if ended >= count else None


def test_the_winner_on_fresh_seeds_survives_a_kill_and_shows_in_the_report(
    searched: Path, tmp_path: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    root = _copy(searched, tmp_path)
    folder = root / "pick"
    record_before = len(optuna.load_study(study_name="pick",
                                          storage=read_meta(folder).optuna_storage).trials)
    ended = launch_and_kill(tmp_path / "spec.toml", tiny_data_dir, root, ray_tmp,
                            lambda: _confirm_ended(folder, 1),
                            command=("study", "confirm", "pick", "--seeds", "3"))
    assert 1 <= ended < 3  # killed with fresh seeds left to run
    output = resume_cli("pick", root, ray_tmp, tmp_path / "resume.log")
    assert "simulated study pick: 3 of 3 planned trials finished, 0 errored" in output

    results = load_results(folder)
    search = results[results["experiment"] == "main"]
    fresh = results[results["experiment"] == "confirm"]
    # the fresh seeds are none of the search's, and each ran its planned epochs once
    assert set(search["seed"]) == {0, 1}
    assert set(fresh["seed"]) == {2, 3, 4}
    for path in fresh["trial_path"].unique():
        assert [int(r["epoch"]) for r in read_result_rows(Path(path))] == [1, 2, 3]
    assert (fresh.groupby("trial_id")["status"].first() == "TERMINATED").all()

    # the configuration selected is the search's best seed group, by its seeds' mean at the
    # epoch where that mean is best
    plan = ConfirmPlan.from_json(read_meta(folder).confirm)
    (chosen,) = plan.selected
    means = search.groupby(["config/seed_group", "epoch"])["overall"].mean()
    assert chosen.score == pytest.approx(means.max())
    assert chosen.epoch == means.idxmax()[1]
    # the fresh mean is what the three fresh seeds score at that epoch
    expected = [_scores(chosen.config, seed, chosen.epoch) for seed in (2, 3, 4)]
    row = confirm_scores(results, plan, "overall", "max").iloc[0]
    assert row["fresh_mean"] == pytest.approx(statistics.mean(expected))
    assert row["fresh_seeds"] == 3
    assert row["held_back"] == pytest.approx(chosen.score - statistics.mean(expected))
    # the fresh seeds do not enter the search's Optuna record
    record = optuna.load_study(study_name="pick", storage=read_meta(folder).optuna_storage)
    assert len(record.trials) == record_before

    report = report_search(folder, out=tmp_path / "report", formats=("md", "csv"))
    table = report.tables["confirm"]
    assert table.iloc[0]["fresh_mean"] == pytest.approx(statistics.mean(expected))
    text = (tmp_path / "report" / "report.md").read_text()
    assert "The best 1 configuration(s) on fresh seeds" in text
    assert f"{chosen.score:.3f}" in text and f"{statistics.mean(expected):.3f}" in text
    # the search's own tables leave the fresh seeds out: its best is still a search trial
    assert set(report.tables["top"]["experiment"]) == {"main"}


def _frame(rows: list[tuple[str, str, dict[str, Any], int, list[float]]]) -> pd.DataFrame:
    """A results frame: (experiment, trial id, config, seed, overall per epoch) per trial."""
    out = []
    for experiment, trial_id, config, seed, scores in rows:
        for epoch, score in enumerate(scores, start=1):
            out.append({"experiment": experiment, "trial_id": trial_id, "status": "TERMINATED",
                        "seed": seed, "epoch": epoch, "overall": score,
                        **{f"config/{k}": v for k, v in {**config, "seed": seed}.items()}})
    return pd.DataFrame(out)


def test_the_plan_ranks_configurations_by_their_seeds_mean_and_picks_unused_seeds() -> None:
    frame = _frame([
        ("main", "a", {"lr": 1e-4}, 0, [0.50, 0.70]),
        ("main", "b", {"lr": 1e-4}, 1, [0.60, 0.50]),  # mean 0.55, 0.60: epoch 2
        ("main", "c", {"lr": 2e-4}, 0, [0.65, 0.66]),
        ("main", "d", {"lr": 3e-4, "init_seed": 7}, 0, [0.40, 0.45]),
    ])
    plan = confirm_plan(frame, "overall", "max", top=2, seeds=3)
    assert [(s.config, s.score, s.epoch, s.trials) for s in plan.selected] == [
        ({"lr": 2e-4}, pytest.approx(0.66), 2, ("c",)),
        ({"lr": 1e-4}, pytest.approx(0.60), 2, ("a", "b")),
    ]
    # seeds 0, 1 and an init_seed of 7 were used: the fresh ones come after
    assert plan.seeds == (8, 9, 10)
    assert plan.cases()[:2] == [{"lr": 2e-4, "seed": 8}, {"lr": 2e-4, "seed": 9}]
    assert ConfirmPlan.from_json(plan.to_json()) == plan
    # a search whose trials set no seed ran on the trainer's default one, 0: never fresh
    unseeded = frame.drop(columns=["seed", "config/seed"])
    assert confirm_plan(unseeded, "overall", "max", 1, 2).seeds == (8, 9)
    assert confirm_plan(unseeded[unseeded["trial_id"] != "d"], "overall", "max", 1, 2).seeds == (
        1, 2)
    # to minimise, the lowest mean wins; its init_seed is a seed, which a fresh one replaces
    assert confirm_plan(frame, "overall", "min", 1, 1).selected[0].config == {"lr": 3e-4}


def test_the_fresh_scores_are_read_at_the_selected_epoch_with_a_t_interval() -> None:
    search = _frame([("main", "a", {"lr": 1e-4}, 0, [0.50, 0.70])])
    plan = confirm_plan(search, "overall", "max", 1, 3)
    fresh = _frame([("confirm", "x", {"lr": 1e-4}, 1, [0.60, 0.64, 0.9]),
                    ("confirm", "y", {"lr": 1e-4}, 2, [0.61, 0.66, 0.9]),
                    ("confirm", "z", {"lr": 1e-4}, 3, [0.62, 0.65, 0.9])])
    row = confirm_scores(pd.concat([search, fresh]), plan, "overall", "max").iloc[0]
    values = [0.64, 0.66, 0.65]  # epoch 2, the selected one, not each seed's best (3)
    low, high = stats.t.interval(0.95, 2, loc=statistics.mean(values),
                                 scale=stats.sem(values))
    assert (row["fresh_mean"], row["fresh_low"], row["fresh_high"]) == (
        pytest.approx(0.65), pytest.approx(low), pytest.approx(high))
    assert row["held_back"] == pytest.approx(0.70 - 0.65)


@pytest.mark.parametrize(("top", "seeds", "message"), [
    (0, 3, "--top must be >= 1, but got 0"),
    (1, 0, "--seeds must be >= 1, but got 0"),
    (3, 1, "--top 3 asks for more configurations than the study's 2 finished one(s) with a "
           "dev overall: use --top 2 or fewer"),
])
def test_the_plan_refuses_what_it_cannot_select(top: int, seeds: int, message: str) -> None:
    frame = _frame([("main", "a", {"lr": 1e-4}, 0, [0.5]), ("main", "b", {"lr": 2e-4}, 0, [0.6])])
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
        confirm_plan(frame, "overall", "max", top, seeds)


def _refused(root: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["study", "confirm", "pick", "--storage", str(root), *args])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.output
    return result.stderr


@pytest.mark.parametrize(("change", "args", "message"), [
    ({"finished_at": None}, (),
     "study 'pick' has not finished its search (0 trial(s) not ended): finish it first with "
     "`mtl-tune study resume pick`, then confirm it"),
    ({"search": "pbt"}, (),
     "study 'pick' is a population: its members changed their values as they trained"),
    ({"confirm": {"selected": [{}], "seeds": [2, 3]}}, (),
     "study 'pick' was confirmed already (its best 1 configuration(s) on seeds [2, 3]): "
     "`mtl-tune study resume pick` finishes an interrupted confirm"),
    ({}, ("--top", "4"), "--top 4 asks for more configurations than the study's 3 finished"),
])
def test_confirm_refuses_what_it_cannot_honour(
    searched: Path, tmp_path: Path, change: dict[str, Any], args: tuple[str, ...], message: str
) -> None:
    root = _copy(searched, tmp_path)
    meta = read_meta(root / "pick")
    write_meta(root / "pick", dataclasses.replace(meta, **change))
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert message in _refused(root, *args)
    # nothing was started or written (study.json's meta included)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert read_meta(root / "pick") == dataclasses.replace(meta, **change)


def test_a_real_grid_search_confirmed_on_fresh_seeds(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, ray_local: None
) -> None:
    """Trained trials (the tiny BERT on tiny data): two learning rates on seed 0, then the
    better one on three fresh seeds, each a trial that trains and reports like the search's."""
    from mtl_tune.studies import confirm_study
    from tests.studies.conftest import launch_on_shared_ray, tiny_fixed

    top = 'name = "grid"\ntrainables = ["it1-baseline"]\nsearch = "grid"\nmax_concurrent = 2'
    path = write_spec(tmp_path, top, tiny_fixed(tiny_bert_dir, tiny_data_dir),
                      '[space]\nlr = { choice = [1e-5, 1e-3] }\n')
    root = tmp_path / "studies"
    assert launch_on_shared_ray(path, root).finished == 2
    outcome = confirm_study(root, "grid", top=1, seeds=3, verbose=0)
    assert (outcome.planned, outcome.finished, outcome.errors) == (3, 3, 0)
    results = load_results(root / "grid")
    search = results[results["experiment"] == "main"]
    fresh = results[results["experiment"] == "confirm"]
    best = search.loc[search["overall"].idxmax()]
    assert set(fresh["config/lr"]) == {best["config/lr"]}
    assert set(fresh["seed"]) == {1, 2, 3} and set(search["seed"]) == {0}
    assert fresh["device"].eq("cpu").all() and fresh["overall"].notna().all()
    plan = ConfirmPlan.from_json(read_meta(root / "grid").confirm)
    row = confirm_scores(results, plan, "overall", "max").iloc[0]
    assert row["selected"] == pytest.approx(best["overall"])
    assert row["fresh_mean"] == pytest.approx(fresh["overall"].mean())
    assert read_meta(root / "grid").finished_at is not None


def test_a_multi_objective_search_is_confirmed_on_its_scalar(
    tmp_path: Path, tiny_data_dir: Path, ray_local: None
) -> None:
    """A search over several objectives picks its configurations on the scalar it prunes on
    (`prune_on`, the study's metric), as its reports rank them."""
    from mtl_tune.studies import confirm_study

    top = ('name = "mo"\ntrainables = ["it10-warmup-decay"]\nsearch = "optuna-mo"\n'
           'objectives = ["sst_acc", "para_acc"]\nprune_on = "overall"\nnum_samples = 4\n'
           "max_concurrent = 2\noptuna_seed = 0")
    path = write_spec(tmp_path, top, {"epochs": 2, "data_dir": str(tiny_data_dir)},
                      SPACE + NO_SCHEDULER)
    root = tmp_path / "studies"
    launch_study(load_spec(str(path)), root, path.read_text(), verbose=0, simulate=True)
    outcome = confirm_study(root, "mo", top=2, seeds=2, verbose=0)
    assert (outcome.planned, outcome.finished) == (4, 4)
    results = load_results(root / "mo")
    search = results[results["experiment"] == "main"]
    best = search.groupby("trial_id")["overall"].max().sort_values(ascending=False)
    plan = ConfirmPlan.from_json(read_meta(root / "mo").confirm)
    assert [s.trials for s in plan.selected] == [(best.index[0],), (best.index[1],)]
    assert [s.score for s in plan.selected] == pytest.approx(list(best.iloc[:2]))
    assert set(results[results["experiment"] == "confirm"]["seed"]) == {1, 2}
