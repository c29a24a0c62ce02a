"""Population-based training through the driver (`search = "pbt"`), with simulated trials: the
population is judged at each interval, the bottom members continue from the top's checkpoints
with mutated hyperparameters, seed by seed for seed groups, every decision logged first."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.exceptions import SpecError
from mtl_tune.studies import launch_study, load_study_spec
from mtl_tune.studies.spec import RAY_ID_ATTR, launch_spec, load_spec
from mtl_tune.studies.store import population_events, read_meta
from tests.studies.conftest import PBT, experiment_rows, write_spec


def _top(name: str, members: int, seeds: int) -> str:
    return (f'name = "{name}"\ntrainables = ["it10-warmup-decay"]\nsearch = "pbt"\n'
            f"num_samples = {members}\nseeds = {seeds}\nmax_concurrent = {members * seeds}\n"
            "optuna_seed = 3")


def _launch(folder: Path, name: str, members: int, seeds: int) -> tuple[Any, Path]:
    path = write_spec(folder, _top(name, members, seeds), {"epochs": 4}, PBT)
    outcome = launch_study(load_spec(str(path)), folder / "studies", path.read_text(),
                           verbose=0, simulate=True)
    return outcome, folder / "studies" / name


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> tuple[Any, Path]:
    """A population of 4 single-seed members, 4 epochs, judged after epochs 1, 2 and 3."""
    return _launch(tmp_path_factory.mktemp("pbt"), "pbt-single", 4, 1)


@pytest.fixture(scope="module")
def grouped(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> tuple[Any, Path]:
    """A population of 3 seed groups of 2 seeds."""
    return _launch(tmp_path_factory.mktemp("pbt"), "pbt-groups", 3, 2)


def _check_generations(folder: Path, members: int, seeds: int) -> list[dict[str, Any]]:
    generations = [e for e in population_events(folder) if e["event"] == "generation"]
    assert [g["epoch"] for g in generations] == [1, 2, 3]
    rows = experiment_rows(folder)
    assert len(rows) == members * seeds
    for trial_rows in rows.values():  # each seed trained every epoch once, none twice
        assert [int(r["epoch"]) for r in trial_rows] == [1, 2, 3, 4]
    for generation in generations:
        point = generation["epoch"]
        assert len(generation["ranking"]) == members and len(generation["exploits"]) == 1
        (exploit,) = generation["exploits"]
        assert exploit["member"] == generation["ranking"][-1]  # the last continues ...
        assert exploit["donor"] == generation["ranking"][0]  # ... from the best (a quarter)
        assert set(exploit["new"]) >= {"lr", "dropout"} and exploit["new"] != exploit["old"]
        assert len(exploit["seeds"]) == seeds
        for member_trial, donor_trial, checkpoint in exploit["seeds"].values():
            donor_row = rows[donor_trial][point - 1]
            # the donor's checkpoint named is the one it reported at the point
            assert checkpoint == donor_row["checkpoint_dir_name"]
            after = rows[member_trial][point]
            # from its next epoch the seed trains with the new values, on from the donor's
            # state (a simulated run carries its best score in its checkpoint)
            assert after["config"]["lr"] == pytest.approx(exploit["new"]["lr"])
            assert after["config"]["dropout"] == exploit["new"]["dropout"]
            assert after["best_overall"] >= donor_row["best_overall"]
            # a seed keeps its own seed
            assert after["config"].get("seed") == rows[member_trial][0]["config"].get("seed")
    return generations


def test_a_population_is_judged_and_exploited_at_each_interval(
    single: tuple[Any, Path]
) -> None:
    outcome, folder = single
    assert (outcome.trials, outcome.finished, outcome.errors) == (4, 4, 0)
    generations = _check_generations(folder, members=4, seeds=1)
    # the Optuna record: a trial per member, the schedule its weights went through (its
    # donors' values up to each exploit, then its own; a change a row) as a user attribute,
    # its last values as its parameters
    record = optuna.load_study(study_name="pbt-single", storage=read_meta(folder).optuna_storage)
    by_member = {t.user_attrs[RAY_ID_ATTR]: t for t in record.trials}
    assert len(by_member) == 4
    last_exploit = {g["exploits"][0]["member"]: g for g in generations}  # (in order)
    rows = experiment_rows(folder)
    for member, trial in by_member.items():
        schedule = trial.user_attrs["schedule"]
        assert schedule[0]["epoch"] == 1
        assert trial.params["lr"] == pytest.approx(schedule[-1]["lr"])
        assert schedule[-1]["lr"] == pytest.approx(rows[member][-1]["config"]["lr"])
        if member in last_exploit:  # its own values from the epoch after its last exploit
            generation = last_exploit[member]
            (exploit,) = generation["exploits"]
            assert schedule[-1] == {"epoch": generation["epoch"] + 1,
                                    "lr": pytest.approx(exploit["new"]["lr"]),
                                    "dropout": exploit["new"]["dropout"]}
            # and before it, its donor's (when the donor's own weights were not replaced
            # after the point, its schedule up to the point)
            point, donor = generation["epoch"], exploit["donor"]
            if not any(g["exploits"][0]["member"] == donor and g["epoch"] > point
                       for g in generations):
                donated = by_member[donor].user_attrs["schedule"]
                assert schedule[:-1] == [c for c in donated if c["epoch"] <= point]


def test_the_end_of_run_sync_records_a_member_with_its_lineages_schedule(
    single: tuple[Any, Path], tmp_path: Path
) -> None:
    # a member a killed driver left unrecorded is added by the end-of-run sync: with the
    # schedule and the final score the live mirror gave the others
    from mtl_tune.studies.driver._driver_run import _sync_mirror
    from mtl_tune.studies.results import read_result_rows

    _, folder = single
    live = optuna.load_study(study_name="pbt-single", storage=read_meta(folder).optuna_storage)
    expected = {t.user_attrs[RAY_ID_ATTR]: (t.value, t.user_attrs["schedule"])
                for t in live.trials}
    results = []
    for trial_dir in sorted((folder / "tune" / "main").iterdir()):
        if (trial_dir / "result.json").is_file():
            last = read_result_rows(trial_dir)[-1]
            results.append(SimpleNamespace(metrics=last, config=last["config"],
                                           path=str(trial_dir), error=None))
    url = f"sqlite:///{tmp_path / 'synced.db'}"
    _sync_mirror(load_study_spec(folder), folder, "main", url, results, [])
    synced = optuna.load_study(study_name="pbt-single", storage=url)
    assert {t.user_attrs[RAY_ID_ATTR]: (t.value, t.user_attrs["schedule"])
            for t in synced.trials} == expected
    assert any(len(schedule) > 1 for _, schedule in expected.values())  # exploits in them


def test_a_population_of_seed_groups_is_judged_on_means_and_copied_seed_by_seed(
    grouped: tuple[Any, Path]
) -> None:
    outcome, folder = grouped
    assert (outcome.trials, outcome.finished, outcome.errors) == (6, 6, 0)
    generations = _check_generations(folder, members=3, seeds=2)
    rows = experiment_rows(folder)
    for generation in generations:
        for member, mean in generation["means"].items():
            seeds = [t for t, r in rows.items() if r[0]["config"].get("seed_group") == member]
            point = generation["epoch"]
            assert mean == pytest.approx(sum(rows[t][point - 1]["overall"] for t in seeds) / 2)
        (exploit,) = generation["exploits"]
        pairs = [tuple(pair[:2]) for pair in exploit["seeds"].values()]
        # seed i from seed i
        seed_of = {t: r[0]["config"]["seed"] for t, r in rows.items()}
        assert all(seed_of[member] == seed_of[donor] for member, donor in pairs)


def test_the_dry_run_shows_the_population_the_interval_and_the_mutations(
    tmp_path: Path
) -> None:
    path = write_spec(tmp_path, _top("pbt-plan", 3, 2), {"epochs": 4}, PBT)
    shown = CliRunner().invoke(app, ["study", "launch", str(path), "--dry-run"])
    assert shown.exit_code == 0, shown.output
    plan = json.loads(shown.stdout)
    assert plan["population"] == {
        "members": 3, "seeds_per_member": 2, "interval": 1,
        "generations_at_epochs": [1, 2, 3], "exploited_per_generation": 1,
        "quantile": 0.25, "resample_probability": 0.25,
        "mutations": {"lr": {"loguniform": [1e-5, 1e-3]}, "dropout": [0.1, 0.2, 0.3]},
    }
    assert plan["spec"]["scheduler"]["type"] == "none"  # the population decides
    # each member's first values of the mutated keys are drawn from the mutations
    assert plan["search_space"]["lr"] == {"loguniform": [1e-5, 1e-3]}


def test_a_pbt_table_needs_a_pbt_search_and_a_spec_file_takes_it(tmp_path: Path) -> None:
    path = write_spec(tmp_path, _top("pbt-table", 4, 1).replace('"pbt"', '"optuna"'),
                      {"epochs": 4}, PBT)
    with pytest.raises(SpecError, match=r"a \[pbt\] table needs search = 'pbt' in .*spec.toml, "
                       "but search is 'optuna'"):
        load_spec(str(path))
    # the table as written, checked against the preset's epochs when [fixed] has none
    path = write_spec(tmp_path, _top("pbt-table", 4, 1), {}, PBT.replace("interval = 1",
                                                                          "interval = 9"))
    with pytest.raises(SpecError, match=r"`pbt.interval` must be below the trials' epochs"):
        launch_spec(str(path), {}, simulate=True)
    spec = load_spec(str(write_spec(tmp_path, _top("pbt-table", 4, 1), {"epochs": 4}, PBT)))
    assert spec.pbt is not None and spec.pbt.mutations["dropout"].values == (0.1, 0.2, 0.3)
    assert spec.scheduler.type == "none" and set(spec.space) == {"lr", "dropout"}
