import csv
import math
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ray.tune import ExperimentAnalysis
from scipy import stats

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.platform.checkpoint import PREDICTIONS_FILE, read_predictions
from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.platform.predict import output_name, predict_data
from mtl_tune.platform.tasks import MAIN_TASKS, TASKS
from mtl_tune.reports import ReportResult, report_ablation, significance_mark
from mtl_tune.studies import human_bytes

ORDER = ["it1-baseline", "it3-cosine-sts", "it4-round-robin"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(study: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    return report_ablation(study, out=tmp_path_factory.mktemp("ablation") / "report")


@pytest.fixture(scope="module")
def messy_report(
    messy_study: Path, unlabeled_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> ReportResult:
    return report_ablation(messy_study, out=tmp_path_factory.mktemp("messy") / "report",
                           formats=("md", "csv", "html"), data_dir=unlabeled_data_dir)


def raw_best(experiment: Path) -> dict[str, list[dict]]:
    """Trainable -> each counted trial's best-epoch result, read from Ray directly."""
    analysis = ExperimentAnalysis(str(experiment))
    out: dict[str, list[dict]] = {}
    for trial in analysis.trials:
        frame = analysis.trial_dataframes[trial.trial_id]
        progress = Path(trial.path) / "progress.csv"
        if frame.empty and progress.is_file():  # Ray gives up on a half-written result.json
            frame = pd.read_csv(progress)
        if frame.empty or trial.status == "ERROR":
            continue
        best = frame.loc[frame["overall"].idxmax()].to_dict()
        best["checkpoint"] = Path(trial.path) / best["checkpoint_dir_name"]
        out.setdefault(trial.config["trainable"], []).append(best)
    return out


def test_dev_table_numbers_equal_trial_results(report: ReportResult, study: Path) -> None:
    dev = report.tables["dev"].set_index("iteration")
    raw = raw_best(study / "tune" / "main")
    # one row per iteration, in registry order (the grid listed them otherwise)
    assert dev.index.tolist() == ORDER
    markdown = (report.folder / "report.md").read_text()
    for name in ORDER:
        for key in METRIC_KEYS:
            values = [r[key] for r in raw[name]]
            mean, std = statistics.fmean(values), statistics.stdev(values)
            # the mean over seeds of each trial's best epoch
            assert dev.loc[name, key] == pytest.approx(mean, abs=1e-12)
            # the sample standard deviation (ddof=1) over seeds
            assert dev.loc[name, f"{key}_std"] == pytest.approx(std, abs=1e-12)
            # two seeds: the CI of the mean is Student's t interval around it
            half = stats.t.ppf(0.975, df=len(values) - 1) * std / math.sqrt(len(values))
            assert dev.loc[name, f"{key}_ci_low"] == pytest.approx(mean - half, abs=1e-12)
            assert dev.loc[name, f"{key}_ci_high"] == pytest.approx(mean + half, abs=1e-12)
            assert dev.loc[name, f"{key}_ci_method"] == "t"
            line = next(li for li in markdown.splitlines() if li.startswith(f"| {name} |"))
            # the Markdown cell shows that mean ± std, rounded
            assert f"{mean:.3f} ± {std:.3f}" in line
        # each row counts its two finished seeds
        assert (dev.loc[name, "n"], dev.loc[name, "trials"]) == (2, "2 done")
    overall = [statistics.fmean(r["overall"] for r in raw[name]) for name in ORDER]
    # Δ prev and Δ base: differences of mean dev overall to the previous and the first row
    assert np.isnan(dev["delta_prev"].iloc[0])
    assert dev["delta_prev"].iloc[1:].tolist() == pytest.approx(np.diff(overall).tolist())
    assert dev["delta_base"].tolist() == pytest.approx([v - overall[0] for v in overall])


def test_dev_csv_keeps_every_number(report: ReportResult) -> None:
    written = pd.read_csv(report.folder / "dev.csv")
    table = report.tables["dev"]
    numeric = [c for c in table.columns if table[c].dtype == float]
    # the CSV holds the table's numbers at full precision
    np.testing.assert_allclose(written[numeric].to_numpy(float), table[numeric].to_numpy(float),
                               rtol=0, atol=1e-15)


def test_significance_compares_consecutive_best_checkpoints(report: ReportResult) -> None:
    dev = report.tables["dev"]

    def overall(checkpoint: str) -> float:
        preds = read_predictions(Path(checkpoint) / PREDICTIONS_FILE)
        sst, para = (float(np.mean(preds[t].predictions == preds[t].labels)) for t in
                     ("sst", "para"))
        r = float(np.corrcoef(preds["sts"].predictions, preds["sts"].labels)[0, 1])
        return (sst + para + (r + 1) / 2) / 3

    scores = [overall(c) for c in dev["best_checkpoint"]]
    # the paired statistic is the overall difference of the two rows' best checkpoints
    assert dev["diff_prev"].iloc[1:].tolist() == pytest.approx(np.diff(scores).tolist(), abs=1e-9)
    for row in dev.iloc[1:].itertuples():
        # p is a probability and the interval holds the observed difference
        assert 0 < row.p_value <= 1 and row.diff_ci_low <= row.diff_prev <= row.diff_ci_high
        # the mark follows the p-value: * p < 0.05, ** p < 0.01
        assert row.mark == significance_mark(row.p_value)
    # the first row has nothing to be compared with
    assert np.isnan(dev["p_value"].iloc[0]) and dev["mark"].iloc[0] == ""
    # the report says what the mark means
    assert "* p < 0.05, ** p < 0.01" in (report.folder / "report.md").read_text()


def test_test_table_equals_fresh_evaluation(
    report: ReportResult, study: Path, tiny_data_dir: Path
) -> None:
    test = report.tables["test"].set_index("iteration")
    raw = raw_best(study / "tune" / "main")
    for name in ORDER:
        best = max(raw[name], key=lambda r: r["overall"])
        # each row evaluates the best checkpoint by dev overall over the row's seeds
        assert Path(test.loc[name, "checkpoint"]) == best["checkpoint"]
        fresh = predict_data(best["checkpoint"], tiny_data_dir, "test", None)
        assert fresh.metrics is not None
        for key in METRIC_KEYS:
            # the test scores equal a fresh evaluation of that checkpoint
            assert test.loc[name, key] == pytest.approx(fresh.metrics[key], abs=1e-12)
        # the labeled split is scored, and the leaderboard files are written too
        assert test.loc[name, "labeled"]
        assert (report.folder / test.loc[name, "predictions"] / "sst-test-output.csv").is_file()


def test_figures_are_valid_png_and_svg(report: ReportResult) -> None:
    # the dev score bars and the learning curves are drawn (a grid study has no search figures)
    assert set(report.figures) == {"dev_scores", "learning_curves"}
    for png in report.figures.values():
        # a PNG file, and an SVG file beside it that parses as XML
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert ET.parse(png.with_suffix(".svg")).getroot().tag.endswith("svg")


def test_html_page_is_self_contained(report: ReportResult) -> None:
    page = (report.folder / "report.html").read_text()
    # no external URL anywhere: no CDN, no link, not even inside the spec's comments
    assert "http://" not in page and "https://" not in page
    # nothing is loaded from elsewhere: no scripts, no stylesheets
    assert "<script" not in page and "<link" not in page
    # the figures are embedded as PNG
    assert page.count("data:image/png;base64,") == len(report.figures)
    # the spec (URL defanged), the environment and the CI column are on the page
    assert "https[:]//example.org/mtl-tune" in page and 'name = &quot;tiny&quot;' in page
    assert "package torch" in page and "GPU-hours" in page and "cpu" in page
    assert " ± " in page and "[" in page


def test_markdown_latex_and_csv_of_each_table(report: ReportResult) -> None:
    names = {p.name for p in report.files}
    # every format of both tables, and the tidy results
    assert {"report.md", "dev.tex", "test.tex", "dev.csv", "test.csv", "results.csv"} <= names
    tex = (report.folder / "dev.tex").read_text()
    # LaTeX: a tabular with escaped symbols
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex and "±" not in tex


def test_non_empty_out_is_not_overwritten(report: ReportResult, study: Path) -> None:
    # an existing non-empty report folder is refused without force
    with pytest.raises(MtlTuneError, match="not empty.*--force"):
        report_ablation(study, out=report.folder)


def test_running_and_errored_trials_are_marked(messy_report: ReportResult,
                                               messy_study: Path) -> None:
    dev = messy_report.tables["dev"].set_index("iteration")
    # the trials column counts each row's trial states
    assert dev["trials"].to_dict() == {
        "it1-baseline": "1 done, 1 running, 1 error",
        "it3-cosine-sts": "2 done",
        "it4-round-robin": "1 done, 1 pending",
    }
    # running trials enter with their best epoch so far; pending and errored ones do not
    assert dev["n"].tolist() == [2, 2, 1]
    raw = raw_best(messy_study / "tune" / "main")
    for name in ORDER:
        # the numbers are those of the trials counted
        assert dev.loc[name, "overall"] == pytest.approx(
            statistics.fmean(r["overall"] for r in raw[name]), abs=1e-12)
    # a single counted trial has no spread
    assert np.isnan(dev.loc["it4-round-robin", "overall_std"])
    markdown = (messy_report.folder / "report.md").read_text()
    page = (messy_report.folder / "report.html").read_text()
    # incomplete rows carry a dagger, explained in a footnote
    assert "1 done, 1 running, 1 error †" in markdown and "† Not every trial" in markdown
    # the errored trial and its error are named, in Markdown and HTML
    for text in (markdown, page):
        assert "Errored trial extra/" in text and "sts_head must be one of" in text
    # the summary says the study is still running
    assert "running (results so far)" in markdown
    # ... and how much disk the study folder takes
    size = sum(p.stat().st_size for p in messy_study.rglob("*") if p.is_file())
    assert f"- **disk**: {human_bytes(size)} (finished trials keep weights only)" in markdown


def test_unlabeled_test_split_writes_leaderboard_files(
    messy_report: ReportResult, unlabeled_data_dir: Path
) -> None:
    test = messy_report.tables["test"]
    # no test labels: no scores, and each row says where its prediction files are
    assert not test["labeled"].any() and test["overall"].isna().all()
    assert all(note.startswith("unlabeled (sst, para, sts)") for note in test["note"])
    for row in test.itertuples():
        for task in MAIN_TASKS:
            source = unlabeled_data_dir / f"{TASKS[task].prefix}-test-student.csv"
            with source.open(newline="", encoding="utf-8") as handle:
                ids = [r["id"] for r in csv.DictReader(handle, delimiter="\t")]
            written = messy_report.folder / row.predictions / output_name(task, "test")
            lines = written.read_text().splitlines()
            # one course-format file per task: a header, then one row per test id, in order
            assert [line.split(" , ")[0] for line in lines[1:]] == ids
    # the table's footnote says the scores are empty because the files have no labels
    assert any("have no labels" in note for note in messy_report.notes)


def test_missing_test_data_folder_is_refused_before_writing(study: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    # a data folder given explicitly must exist
    with pytest.raises(MtlTuneError, match="does not exist; check --data-dir"):
        report_ablation(study, out=out, data_dir=tmp_path / "nope")
    # and nothing was written
    assert not out.exists()
