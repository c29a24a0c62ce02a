"""`report search A B`: the expected best against budget of several searches, overlaid and
side by side at each n, each from its own finished trials."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.reports import report_search
from mtl_tune.reports._budget import expected_best
from mtl_tune.studies import best_epochs, launch_study, load_results
from mtl_tune.studies.spec import load_spec
from tests.studies.conftest import NO_SCHEDULER, write_spec

SPACE = "[space]\nlr = { loguniform = [1e-5, 1e-3] }\ndropout = { uniform = [0.1, 0.5] }\n"


def _search(folder: Path, name: str, samples: int, data: Path, extra: str = "") -> Path:
    top = (f'name = "{name}"\ntrainables = ["it10-warmup-decay"]\nsearch = "optuna"\n'
           f"num_samples = {samples}\nmax_concurrent = 2\noptuna_seed = 1{extra}")
    (folder / name).mkdir(parents=True)
    path = write_spec(folder / name, top, {"epochs": 2, "data_dir": str(data)},
                      SPACE + NO_SCHEDULER)
    launch_study(load_spec(str(path)), folder / "studies", path.read_text(), verbose=0,
                 simulate=True)
    return folder / "studies" / name


def _curve(folder: Path) -> list[float]:
    best = best_epochs(load_results(folder), "overall", "max")
    return expected_best(list(best["overall"].astype(float)), "max")


def test_two_searches_side_by_side_and_a_mismatch_refused(
    tmp_path: Path, tiny_data_dir: Path, ray_local: None
) -> None:
    a = _search(tmp_path, "a", 4, tiny_data_dir)
    b = _search(tmp_path, "b", 6, tiny_data_dir)
    report = report_search(a, out=tmp_path / "report", formats=("md", "csv"), compare=[b])
    side = report.tables["budget_compare"]
    assert list(side["trials"]) == [1, 2, 3, 4, 5, 6]
    assert list(side["a"][:4]) == pytest.approx(_curve(a))
    assert side["a"][4:].isna().all()  # nothing past a's own 4 trials
    assert list(side["b"]) == pytest.approx(_curve(b))
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Expected best dev Overall, study by study" in text
    assert (tmp_path / "report" / "figures" / "expected_best.png").is_file()

    low = _search(tmp_path, "low", 3, tiny_data_dir, '\nmode = "min"')
    result = CliRunner().invoke(app, ["report", "search", "a", "low", "--storage",
                                      str(tmp_path / "studies"), "--out",
                                      str(tmp_path / "refused")])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(
        "Error: study 'low' ranks by overall (min) and 'a' by overall (max): compare searches "
        "of the same metric and mode")
    assert not (tmp_path / "refused").exists()
    assert low.is_dir()


@pytest.mark.parametrize(("change", "message"), [
    ("this-pbt", "study 'a' is a population: one run of its budget, not n trials drawn from a "
                 "search; it has no expected-best curve"),
    ("other-pbt", "study 'b' is a population: one run of its budget, not n trials drawn from a "
                  "search; it has no expected-best curve"),
    ("other-one", "study 'b' has 1 finished trial(s) or group(s): its expected best needs at "
                  "least 2"),
])
def test_a_comparison_that_cannot_be_drawn_is_refused(
    tmp_path: Path, tiny_data_dir: Path, ray_local: None, change: str, message: str
) -> None:
    import dataclasses

    from mtl_tune.studies.store import read_meta, write_meta

    a = _search(tmp_path, "a", 2, tiny_data_dir)
    b = _search(tmp_path, "b", 1 if change == "other-one" else 2, tiny_data_dir)
    pbt = {"this-pbt": a, "other-pbt": b}.get(change)
    if pbt is not None:
        write_meta(pbt, dataclasses.replace(read_meta(pbt), search="pbt"))
    result = CliRunner().invoke(app, ["report", "search", "a", "b", "--storage",
                                      str(tmp_path / "studies"), "--out",
                                      str(tmp_path / "refused")])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: {message}")
    assert not (tmp_path / "refused").exists()
