"""The variance split of a study with crossed seeds (`reports/_variance.py`): its parts add up
to the row's variance over its runs, and `report ablation` shows it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtl_tune.reports import report_ablation
from mtl_tune.reports._variance import variance_split
from mtl_tune.studies import best_epochs, launch_study, load_results
from mtl_tune.studies.spec import load_spec
from tests.studies.conftest import NO_SCHEDULER, write_spec


def test_a_hand_made_table_splits_as_computed_by_hand() -> None:
    # init means 2 and 6, data means 3 and 5, no interaction: SS 16 + 4 + 0 = 20
    split = variance_split({(0, 0): 1.0, (0, 1): 3.0, (1, 0): 5.0, (1, 1): 7.0}, 200, 0)
    assert split is not None
    assert (split["n_init"], split["n_data"], split["runs"]) == (2, 2, 4)
    assert split["variance"] == pytest.approx(20 / 3) == pytest.approx(np.var([1, 3, 5, 7],
                                                                               ddof=1))
    assert (split["init_variance"], split["data_variance"], split["rest_variance"]) == (
        pytest.approx(16 / 3), pytest.approx(4 / 3), pytest.approx(0.0))
    assert (split["init_share"], split["data_share"], split["rest_share"]) == (
        pytest.approx(0.8), pytest.approx(0.2), pytest.approx(0.0))


def test_the_parts_add_up_to_the_total_and_an_incomplete_table_has_no_split() -> None:
    rng = np.random.default_rng(3)
    runs = {(i, d): float(rng.normal()) for i in range(3) for d in range(3)}
    split = variance_split(runs, 500, 1)
    assert split is not None
    assert sum(split[f"{p}_variance"] for p in ("init", "data", "rest")) == pytest.approx(
        split["variance"])
    assert sum(split[f"{p}_share"] for p in ("init", "data", "rest")) == pytest.approx(1.0)
    for part in ("init", "data", "rest"):
        assert 0.0 <= split[f"{part}_share_low"] <= split[f"{part}_share_high"] <= 1.0
    del runs[(2, 2)]
    assert variance_split(runs) is None
    assert variance_split({(0, d): 1.0 for d in range(3)}) is None  # one init seed


def test_a_crossed_two_by_two_study_reports_its_split(
    tmp_path: Path, tiny_data_dir: Path, ray_local: None
) -> None:
    top = ('name = "crossed"\ntrainables = ["it1-baseline"]\nsearch = "grid"\nseeds = 2\n'
           'seed_design = "crossed"\nmax_concurrent = 2')
    path = write_spec(tmp_path, top, {"epochs": 2, "data_dir": str(tiny_data_dir)},
                      NO_SCHEDULER)
    outcome = launch_study(load_spec(str(path)), tmp_path / "studies", path.read_text(),
                           verbose=0, simulate=True)
    assert outcome.finished == 4
    results = load_results(outcome.folder)
    best = best_epochs(results, "overall", "max")
    pairs = {(int(i), int(d)): float(v) for i, d, v in
             zip(best["config/init_seed"], best["config/data_seed"], best["overall"],
                 strict=True)}
    assert set(pairs) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert sorted(best["seed"]) == [0, 1, 2, 3]
    report = report_ablation(outcome.folder, out=tmp_path / "report", formats=("md", "csv"))
    (row,) = report.tables["variance"].to_dict("records")
    assert row["variance"] == pytest.approx(np.var(list(pairs.values()), ddof=1))
    assert row["init_variance"] + row["data_variance"] + row["rest_variance"] == pytest.approx(
        row["variance"])
    init_means = [np.mean([pairs[(i, 0)], pairs[(i, 1)]]) for i in (0, 1)]
    assert row["init_variance"] == pytest.approx(
        2 * sum((m - np.mean(init_means)) ** 2 for m in init_means) / 3)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Where the spread over seeds comes from" in text and "2 x 2" in text
    # its columns are named as the other tables' are
    assert "| Iteration | Runs | SD | Initialisation | Data order | Rest |" in text
