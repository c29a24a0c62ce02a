import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ray.tune import ExperimentAnalysis

from mtl_tune.exceptions import ConfigError, MtlTuneError
from mtl_tune.reports import ReportResult, report_ablation, report_search

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEARCH_FIGURES = {"param_effects", "param_importances", "optimization_history",
                  "expected_best"}


@pytest.fixture(scope="module")
def report(search_study: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    return report_search(search_study, out=tmp_path_factory.mktemp("search") / "report", top_k=4)


def test_top_k_configurations_by_best_dev_overall(report: ReportResult,
                                                  search_study: Path) -> None:
    analysis = ExperimentAnalysis(str(search_study / "tune" / "main"))
    best = sorted(
        ((analysis.trial_dataframes[t.trial_id]["overall"].max(), t.trial_id, t.config)
         for t in analysis.trials),
        key=lambda item: -item[0],
    )[:4]
    top = report.tables["top"]
    # the k best trials by their best dev overall, best first, ranked 1..k
    assert top["trial_id"].tolist() == [trial_id for _, trial_id, _ in best]
    assert top["overall"].tolist() == pytest.approx([value for value, _, _ in best])
    assert top["rank"].tolist() == [1, 2, 3, 4]
    # with the searched parameters' values of each trial
    assert top["config/trainable"].tolist() == [c["trainable"] for _, _, c in best]
    assert top["config/seed"].tolist() == [c["seed"] for _, _, c in best]


def test_importances_from_the_optuna_study(report: ReportResult) -> None:
    importances = report.tables["importances"]
    # Optuna's importances of the searched parameters, normalised to sum to 1
    assert set(importances["param"]) == {"trainable", "seed"}
    assert importances["importance"].sum() == pytest.approx(1.0)
    # sorted from most to least important
    assert importances["importance"].is_monotonic_decreasing


def test_search_figures_and_page(report: ReportResult) -> None:
    # the metric against each parameter, the importances and the history are drawn
    assert set(report.figures) == SEARCH_FIGURES
    for png in report.figures.values():
        # valid PNG, with a parseable SVG beside it
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert ET.parse(png.with_suffix(".svg")).getroot().tag.endswith("svg")
    page = (report.folder / "report.html").read_text()
    # the page is self-contained
    assert "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") == len(SEARCH_FIGURES)


def test_ablation_of_a_search_adds_search_figures(search_study: Path, tmp_path: Path) -> None:
    result = report_ablation(search_study, out=tmp_path / "r", formats=("csv",))
    # a study whose search is not a grid also gets the search figures (the budget's is the
    # search report's)
    assert SEARCH_FIGURES - {"expected_best"} <= set(result.figures)


def test_top_k_must_be_positive(search_study: Path) -> None:
    # top_k below 1 is refused with the rule and the value
    with pytest.raises(ConfigError, match=r"`top_k >= 1` must hold, but got top_k=0"):
        report_search(search_study, top_k=0)


def test_a_family_trees_colour_is_refused_for_a_search(search_study: Path, tmp_path: Path
                                                      ) -> None:
    # --color-by colours a population's family tree; a search has none: refused, nothing written
    with pytest.raises(MtlTuneError, match=r"study 'search' is not population-based \(search "
                       r"= 'optuna'\): it has no family tree to colour; leave out --color-by"):
        report_search(search_study, out=tmp_path / "report", color_by="lr")
    assert not (tmp_path / "report").exists()


def test_a_one_panel_figure_keeps_its_whole_title() -> None:
    import pandas as pd

    from mtl_tune.reports import draw_param_effects

    data = pd.DataFrame({"param": ["lr"] * 3, "value": [1e-5, 3e-5, 1e-4],
                         "score": [0.4, 0.5, 0.45]})
    figure = draw_param_effects(data, "overall", log_params={"lr"})
    figure.canvas.draw()
    title = figure._suptitle
    assert title is not None
    box, frame = title.get_window_extent(), figure.bbox
    # the title is wrapped onto lines that fit the one panel's figure, both ends inside it
    assert "\n" in title.get_text() and frame.x0 <= box.x0 and box.x1 <= frame.x1


def test_a_searched_trainable_is_one_column_of_the_top_table() -> None:
    import pandas as pd

    from mtl_tune.reports._display import top_display

    top = pd.DataFrame([{"rank": 1, "experiment": "main", "trial_id": "t1",
                         "trainable": "it1-baseline", "config/trainable": "it1-baseline",
                         "config/lr": 1e-5, "epoch": 2, "sst_acc": 0.5, "para_acc": 0.6,
                         "sts_corr": 0.2, "overall": 0.5, "mean_score": 0.43,
                         "status": "TERMINATED"}])
    columns = list(top_display(top, ["trainable", "lr"], "md").columns)
    assert columns[:4] == ["Rank", "Trial", "Trainable", "lr"] and "trainable" not in columns


@pytest.mark.parametrize("mode", ["max", "min"])
def test_the_expected_best_of_n_trials_is_the_mean_best_over_every_n_subset(mode: str) -> None:
    import itertools
    import statistics

    from mtl_tune.reports._budget import expected_best

    scores = [0.61, 0.58, 0.66, 0.58, 0.70, 0.52]  # a 6-trial study, with a tie
    pick = max if mode == "max" else min
    brute = [statistics.fmean(pick(subset) for subset in itertools.combinations(scores, n))
             for n in range(1, 7)]
    assert expected_best(scores, mode) == pytest.approx(brute, rel=1e-12)
    assert expected_best(scores, mode)[0] == pytest.approx(statistics.fmean(scores))
    assert expected_best(scores, mode)[-1] == pick(scores)


def test_the_search_report_draws_the_expected_best_against_trials_and_hours(
    report: ReportResult, search_study: Path
) -> None:
    from mtl_tune.studies import load_results

    budget = report.tables["budget"]
    results = load_results(search_study)
    finished = results[results["status"] == "TERMINATED"]
    best = finished.groupby("trial_id")["overall"].max()
    # one row per n up to the finished trials, from their mean to their best
    assert list(budget["trials"]) == list(range(1, len(best) + 1))
    assert budget["expected_best"].iloc[0] == pytest.approx(best.mean())
    assert budget["expected_best"].iloc[-1] == pytest.approx(best.max())
    assert budget["expected_best"].is_monotonic_increasing
    # device-hours: the trials' mean wall time times the CPUs each held, times n
    per_trial = finished.groupby("trial_id").first()
    hours = (per_trial["trial_seconds"] * per_trial["cpus_per_trial"]).mean() / 3600
    assert budget["device_hours"].iloc[-1] == pytest.approx(len(best) * hours)
    text = (report.folder / "report.md").read_text()
    assert "Expected best dev Overall against budget" in text and "CPU-hours" in text
    # and each trial of the top table, the compute it used
    top = report.tables["top"]
    assert top["device_hours"].tolist() == pytest.approx(
        [per_trial.loc[t, "trial_seconds"] * per_trial.loc[t, "cpus_per_trial"] / 3600
         for t in top["trial_id"]])
    assert "CPU-h" in text
