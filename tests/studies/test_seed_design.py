"""`seed_design = "crossed"`: every initialisation seed with every data seed, N x N runs per
configuration, each with a `seed` of its own (`spec/_seed_design.py`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtl_tune.exceptions import SpecError
from mtl_tune.studies.driver._tune_setup import grid_configurations
from mtl_tune.studies.spec import describe, load_spec, resolve_study, seed_runs, trial_count
from tests.studies.conftest import write_spec

CROSSED = ('name = "c"\ntrainables = ["it1-baseline", "it2-dropout"]\nsearch = "grid"\n'
           'seeds = 3\nseed_design = "crossed"')


def test_crossed_seeds_run_every_initialisation_with_every_data_order(tmp_path: Path) -> None:
    spec = load_spec(str(write_spec(tmp_path, CROSSED, {"epochs": 1, "seed": 10})))
    runs = seed_runs(spec)
    assert len(runs) == 9
    assert {(r["init_seed"], r["data_seed"]) for r in runs} == {
        (i, d) for i in (10, 11, 12) for d in (10, 11, 12)}
    # each run's own seed, the same (init, data) pair's in every row: base + i*N + d
    assert [r["seed"] for r in runs] == list(range(10, 19))
    assert runs[5] == {"seed": 15, "init_seed": 11, "data_seed": 12}
    # 2 trainables x 9 runs, handed to Tune one by one (its grid cannot tie the keys together)
    configurations = grid_configurations(spec)
    assert trial_count(spec) == len(configurations) == 18
    assert configurations[:2] == [{"trainable": "it1-baseline", **runs[0]},
                                  {"trainable": "it1-baseline", **runs[1]}]
    plan = describe(resolve_study(spec))
    assert plan["search_space"]["init_seed"] == plan["search_space"]["data_seed"] == [10, 11, 12]
    assert plan["spec"]["seed_design"] == "crossed"


def test_the_shared_design_is_unchanged(tmp_path: Path) -> None:
    spec = load_spec(str(write_spec(tmp_path, CROSSED.replace('"crossed"', '"shared"'),
                                    {"epochs": 1})))
    assert seed_runs(spec) == [{"seed": 0}, {"seed": 1}, {"seed": 2}]
    assert trial_count(spec) == 6


@pytest.mark.parametrize(("top", "fixed", "message"), [
    (CROSSED.replace('"crossed"', '"nested"'), {},
     "`seed_design` must be one of ('shared', 'crossed') in {file}, but got 'nested'"),
    (CROSSED.replace("seeds = 3", "seeds = 1"), {},
     "`seed_design` 'crossed' needs `seeds` >= 2 in {file} (N x N runs per row), but got 1"),
    (CROSSED.replace('search = "grid"', 'search = "optuna"\nnum_samples = 2'), {},
     "`seed_design` 'crossed' needs a fixed comparison (search one of ('grid', 'sequential')) "
     "in {file}, but search is 'optuna'"),
    (CROSSED, {"init_seed": 4},
     "`seed_design` 'crossed' sets init_seed itself in {file}: remove it from [fixed]"),
])
def test_a_seed_design_that_cannot_hold_is_refused(
    tmp_path: Path, top: str, fixed: dict[str, int], message: str
) -> None:
    tables = '[space]\nlr = { loguniform = [1e-5, 1e-3] }\n' if "optuna" in top else ""
    path = write_spec(tmp_path, top, {"epochs": 1, **fixed}, tables)
    with pytest.raises(SpecError, match=re.escape(message.format(file=path))):
        load_spec(str(path))
