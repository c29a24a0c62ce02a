"""Population-based training end to end with the bundled all-MiniLM-L6-v2 on the real data
(a few dozen rows per task): 4 epochs, so 3 generations, once with 6 single-seed members and
once with 3 seed groups of 2; the search report draws the family tree and lists the schedule
and the decisions, and a replay of the best member trains at the lr its lineage logged."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.reports import report_search
from mtl_tune.studies import launch_study
from mtl_tune.studies.spec import SEED_GROUP_KEY, load_spec
from mtl_tune.studies.store import population_events, read_replays
from tests.studies.conftest import PBT, experiment_rows, write_spec

# with the study's chaos set: minutes, not seconds (the real backbone, 24 trial-epochs a study)
pytestmark = [pytest.mark.chaos, pytest.mark.integration]


@pytest.mark.parametrize(("members", "seeds"), [(6, 1), (3, 2)],
                         ids=["six-single-seed-members", "three-seed-groups-of-two"])
def test_a_minilm_population_runs_end_to_end_and_its_replay_follows_the_logged_lr(
    tmp_path: Path, ray_local: None, labeled_data: Path, members: int, seeds: int
) -> None:
    name = f"pbt-minilm-{members}x{seeds}"
    top = (f'name = "{name}"\ntrainables = ["it10-warmup-decay"]\nsearch = "pbt"\n'
           f"num_samples = {members}\nseeds = {seeds}\nmax_concurrent = {members * seeds}\n"
           "optuna_seed = 11")
    fixed = {"data_dir": str(labeled_data), "epochs": 4, "max_examples": 32,
             "batch_size": 16, "max_length": 48, "eval_batch_size": 64, "threads": 1}
    path = write_spec(tmp_path, top, fixed, PBT + "\n[resources]\ncpu = 0.3")
    outcome = launch_study(load_spec(str(path)), tmp_path / "studies", path.read_text(),
                           verbose=0)
    folder = tmp_path / "studies" / name
    assert (outcome.trials, outcome.finished, outcome.errors) == (members * seeds,) * 2 + (0,)
    generations = [e for e in population_events(folder) if e["event"] == "generation"]
    assert [g["epoch"] for g in generations] == [1, 2, 3]
    assert all(len(g["ranking"]) == members and g["exploits"] for g in generations)

    result = report_search(folder, tmp_path / "report", formats=("md",))
    assert set(result.tables) >= {"population", "decisions", "schedule"}
    assert len(result.tables["population"]) == members
    assert len(result.tables["decisions"]) == sum(len(g["exploits"]) for g in generations)
    assert (tmp_path / "report" / "figures" / "family_tree.png").is_file()

    # the best member's (first seed's) trial, replayed on a fresh seed
    best = str(result.tables["population"].iloc[0]["member"])
    rows = experiment_rows(folder)
    trial = sorted(t for t, r in rows.items()
                   if best in (t, r[0]["config"].get(SEED_GROUP_KEY)))[0]
    shown = CliRunner().invoke(app, ["train", "--replay", f"{name}:{trial}", "--storage",
                                     str(folder.parent), "--out", str(tmp_path / "replay")])
    assert shown.exit_code == 0, shown.output
    (replay,) = read_replays(folder)
    # the lr each epoch ended at is the one the lineage logged: the donors' rows up to each
    # exploit, the trial's own after (the same steps, the same schedule, another seed)
    logged = {}
    for segment in replay["lineage"]:
        for row in rows[segment["trial"]]:
            if segment["first"] <= int(row["training_iteration"]) <= segment["last"]:
                logged[int(row["training_iteration"])] = row["lr"]
    assert [e["lr"] for e in replay["epochs"]] == pytest.approx(
        [logged[e] for e in range(1, 5)], rel=1e-9)
    assert len({round(v, 12) for v in logged.values()}) == 4  # (a rate that moves)

