"""`mtl-tune train --replay STUDY:TRIAL`: a population-based trial's schedule trained from
scratch on fresh seeds, outside Ray Tune, and recorded in the study for its report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.exceptions import ConfigError
from mtl_tune.studies import launch_study, open_study, replay_plan, study_results
from mtl_tune.studies.spec import RAY_ID_ATTR, load_spec
from mtl_tune.studies.store import population_events, read_meta, read_replays
from tests.studies.conftest import PBT, tiny_fixed, write_spec

NAME = "pbt-replayed"


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory, ray_local: None, tiny_bert_dir: Path,
               tiny_data_dir: Path) -> Path:
    """A simulated population of 4 single-seed members over 3 epochs, on the tiny BERT's keys
    (which a replay trains with)."""
    folder = tmp_path_factory.mktemp("pbt-replay")
    top = (f'name = "{NAME}"\ntrainables = ["it10-warmup-decay"]\nsearch = "pbt"\n'
           "num_samples = 4\nmax_concurrent = 4\noptuna_seed = 5")
    fixed = tiny_fixed(tiny_bert_dir, tiny_data_dir, epochs=3, max_examples=24)
    path = write_spec(folder, top, fixed, PBT)
    launch_study(load_spec(str(path)), folder / "studies", path.read_text(), verbose=0,
                 simulate=True)
    return folder / "studies" / NAME


def _exploited(folder: Path) -> tuple[str, dict[str, Any]]:
    """The member exploited at the last generation (its lineage crosses a donor), and it."""
    generation = [e for e in population_events(folder) if e["event"] == "generation"][-1]
    (exploit,) = generation["exploits"]
    return exploit["seeds"]["0"][0], generation


def test_a_trial_is_replayed_on_fresh_seeds_following_its_lineages_schedule(
    population: Path, tmp_path: Path, tiny_data_dir: Path
) -> None:
    trial, generation = _exploited(population)
    record = optuna.load_study(study_name=NAME, storage=read_meta(population).optuna_storage)
    schedule = {t.user_attrs[RAY_ID_ATTR]: t.user_attrs["schedule"] for t in record.trials}
    study_seeds = {int(s) for s in study_results(open_study(population))["seed"].dropna()}

    args = ["train", "--replay", f"{NAME}:{trial}", "--seeds", "2", "--storage",
            str(population.parent), "--out", str(tmp_path / "replays")]
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0, shown.output
    replays = read_replays(population)
    # two seeds the study never used, each recorded in the study, all epochs
    seeds = [r["seed"] for r in replays]
    assert len(seeds) == 2 and not set(seeds) & study_seeds
    for replay in replays:
        assert replay["trial"] == trial
        # the schedule the Optuna record holds: the donor's values up to the point, then
        # the member's new ones (the exploit's)
        assert replay["schedule"] == schedule[trial]
        assert replay["schedule"][-1]["epoch"] == generation["epoch"] + 1
        assert replay["lineage"][0]["trial"] == generation["exploits"][0]["donor"]
        assert [e["epoch"] for e in replay["epochs"]] == [1, 2, 3]
        run = json.loads((Path(replay["out"]) / "metrics.json").read_text())
        assert run["config"]["seed"] == replay["seed"]
        assert run["schedule"] == replay["schedule"]
        # trained on the study's data (its folder is here), at each epoch's end at a rate of
        # the schedule's base for that epoch (it10's warmup and decay scale it down, to 0 at
        # the last step), as the run's own record says
        assert run["config"]["data_dir"] == str(tiny_data_dir)
        for epoch, row in zip(run["epochs"], replay["epochs"], strict=True):
            base = [c for c in replay["schedule"] if c["epoch"] <= row["epoch"]][-1]["lr"]
            assert 0 <= row["lr"] <= base and epoch["lr"] == row["lr"]
        assert replay["epochs"][0]["lr"] > 0
    # a second call picks seeds unused by the study and by the replays recorded
    again = CliRunner().invoke(app, [*args[:4], "1", *args[5:]])
    assert again.exit_code == 0, again.output
    assert len({r["seed"] for r in read_replays(population)}) == 3


@pytest.mark.parametrize(("extra", "message"), [
    (["--set", "lr=1e-4"], "the replayed schedule sets lr at each change; --set lr=... would "
     "not replay it (leave it out)"),
    (["--epochs", "5"], "a replay trains the trial's 3 epochs, but epochs=5 is given; leave "
     "it out"),
    (["it7-cosrelu-tuned"], "trains the trial's own trainable, but TRAINABLE it7-cosrelu-tuned "
     "is given too; give one of them"),
    (["--seeds", "0"], "`--seeds >= 1` must hold, but got --seeds 0"),
    (["--seeds", "2", "--set", "seed=7"], "--set seed=7 names one seed, but --seeds 2 asks for "
     "2; give one of them"),
])
def test_a_replay_that_would_not_follow_the_schedule_is_refused(
    population: Path, extra: list[str], message: str
) -> None:
    trial, _ = _exploited(population)
    shown = CliRunner().invoke(app, ["train", "--replay", f"{NAME}:{trial}", "--storage",
                                     str(population.parent), *extra])
    assert shown.exit_code != 0
    assert message in " ".join(shown.output.split())


def test_replay_names_what_it_cannot_follow(population: Path) -> None:
    shown = CliRunner().invoke(app, ["train", "--replay", NAME])
    assert shown.exit_code != 0
    assert "--replay must be STUDY:TRIAL" in " ".join(shown.output.split())
    shown = CliRunner().invoke(app, ["train"])
    assert "train needs a TRAINABLE" in " ".join(shown.output.split())
    shown = CliRunner().invoke(app, ["train", "it7-cosrelu-tuned", "--seeds", "3"])
    assert shown.exit_code != 0 and "--seeds 3 counts the replays of --replay; a run of a " \
        "trainable trains one seed (--set seed=N)" in " ".join(shown.output.split())
    info = open_study(population)
    results = study_results(info)
    with pytest.raises(ConfigError, match=r"study 'pbt-replayed' has no trial 'nope' \(it has 4"):
        replay_plan(info, results, "nope")
    searched = dataclasses.replace(info, search="optuna")
    with pytest.raises(ConfigError, match="`train --replay` follows the schedule of a "
                       "population-based trial, but study 'pbt-replayed' searched with 'optuna'"):
        replay_plan(searched, results, "any")


def test_the_search_report_draws_the_family_tree_and_puts_the_replays_beside_the_population(
    population: Path, tmp_path: Path
) -> None:
    from mtl_tune.reports import report_search

    result = report_search(population, tmp_path / "report", formats=("md", "csv"))
    generations = [e for e in population_events(population) if e["event"] == "generation"]
    final = result.tables["population"]
    # the final population, ranked on its last epoch's score
    assert len(final) == 4 and list(final["epoch"]) == [3] * 4
    assert list(final["overall"]) == sorted(final["overall"], reverse=True)
    assert final["exploits"].sum() == sum(len(g["exploits"]) for g in generations)
    decisions = result.tables["decisions"]
    assert list(decisions["epoch"]) == [g["epoch"] for g in generations]  # one exploit each
    assert list(decisions["member"]) == [g["exploits"][0]["member"] for g in generations]
    # the best member's schedule: its lineage, oldest run first, ending in its own
    best = final.iloc[0]["member"]
    schedule = result.tables["schedule"]
    assert schedule.iloc[-1]["trial"] == best and schedule.iloc[0]["epochs"].startswith("1–")
    # the replays of the exploited trial beside its own score (the last epoch's)
    trial, _ = _exploited(population)
    replays = result.tables["replays"]
    recorded = [r["epochs"][-1]["overall"] for r in read_replays(population)]
    (row,) = replays.to_dict("records")
    assert row["trial"] == trial and row["seeds"] == len(recorded) == 3
    assert row["mean"] == pytest.approx(sum(recorded) / 3)
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert row["population_score"] == pytest.approx(
        final.set_index("member").loc[trial, "overall"])
    assert (tmp_path / "report" / "figures" / "family_tree.png").stat().st_size > 5_000
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Family tree" in text and "Replays on fresh seeds" in text
    assert "coloured by lr;" in " ".join(text.split())  # by default


def test_the_family_tree_is_coloured_by_a_chosen_mutated_key(population: Path, tmp_path: Path
                                                             ) -> None:
    command = ["report", "search", NAME, "--storage", str(population.parent), "--formats", "md"]
    shown = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "r"),
                                     "--color-by", "dropout"])
    assert shown.exit_code == 0, shown.output
    text = " ".join((tmp_path / "r" / "report.md").read_text().split())
    assert "coloured by dropout;" in text and "coloured by lr" not in text
    # a key the population does not mutate is refused with the rule and the keys it does
    refused = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "x"),
                                       "--color-by", "batch_size"])
    assert refused.exit_code == 1
    assert ("`color_by` must be a key the population mutates (lr, dropout), but got "
            "'batch_size'") in " ".join(refused.output.split())
    assert not (tmp_path / "x").exists()
