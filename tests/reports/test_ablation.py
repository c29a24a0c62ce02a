import csv
import json
import math
import re
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
from mtl_tune.platform.metrics import METRIC_KEYS, METRIC_RANGES
from mtl_tune.platform.predict import output_name, predict_data
from mtl_tune.platform.tasks import MAIN_TASKS, TASKS
from mtl_tune.reports import (
    ReportResult,
    draw_learning_curves,
    holm,
    report_ablation,
    seeds_for_power,
    significance_mark,
)
from mtl_tune.studies import best_epochs, human_bytes, load_results

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
        result = Path(trial.path) / "result.json"
        if frame.empty and result.is_file():  # Ray gives up on a half-written result.json:
            rows = []  # its whole lines count, a torn last one does not (progress.csv may
            for line in result.read_text().splitlines():  # still hold that epoch)
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
            frame = pd.json_normalize(rows, sep="/")
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
            # two seeds: the CI of the mean is Student's t interval around it, cut to the
            # metric's range where it leaves it
            half = stats.t.ppf(0.975, df=len(values) - 1) * std / math.sqrt(len(values))
            low, high = METRIC_RANGES[key]
            assert dev.loc[name, f"{key}_ci_low"] == pytest.approx(max(low, mean - half),
                                                                    abs=1e-12)
            assert dev.loc[name, f"{key}_ci_high"] == pytest.approx(min(high, mean + half),
                                                                     abs=1e-12)
            cut = mean - half < low or mean + half > high
            assert dev.loc[name, f"{key}_ci_method"] == (
                f"t, cut to [{low:.4g}, {high:.4g}]" if cut else "t")
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
    # P(better): the share of (this row's seed, previous row's seed) pairs this one wins, a
    # tie half, counted directly
    assert np.isnan(dev["p_better"].iloc[0])
    for previous, name in zip(ORDER, ORDER[1:], strict=False):
        pairs = [(r["overall"], q["overall"]) for r in raw[name] for q in raw[previous]]
        won = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
        assert dev.loc[name, "p_better"] == pytest.approx(won)
        assert dev.loc[name, "p_better_ci_low"] <= won <= dev.loc[name, "p_better_ci_high"]
    # the compute behind each row: its trials' wall time times the CPUs each held (no GPUs)
    results = load_results(study)
    per_trial = results.groupby("trial_id").first()
    for name in ORDER:
        mine = per_trial[per_trial["trainable"] == name]
        hours = float((mine["trial_seconds"] * mine["cpus_per_trial"]).sum()) / 3600
        assert dev.loc[name, "device_hours"] == pytest.approx(hours) and hours > 0
    assert set(dev["device"]) == {"CPU"} and "CPU-h" in markdown


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
        # the mark follows the Holm-adjusted p-value: * p < 0.05, ** p < 0.01
        assert row.p_holm >= row.p_value and row.mark == significance_mark(row.p_holm)
    # Holm over the table's two comparisons
    np.testing.assert_allclose(dev["p_holm"], holm(dev["p_value"].tolist()))
    # the first row has nothing to be compared with
    assert np.isnan(dev["p_value"].iloc[0]) and dev["mark"].iloc[0] == ""
    markdown = (report.folder / "report.md").read_text()
    # the report says what the mark means, and shows the adjusted p
    assert "* p < 0.05, ** p < 0.01" in markdown and "| p (Holm) |" in markdown
    assert "Holm-Bonferroni" in markdown and "paired permutation test" in markdown


def test_power_column_says_how_many_seeds_settle_each_change(
    report: ReportResult, study: Path
) -> None:
    dev = report.tables["dev"]
    best = best_epochs(load_results(study), "overall", "max")
    for position in (1, 2):
        before, after = (best.loc[best["trainable"] == dev["iteration"].iloc[i], "overall"]
                         for i in (position - 1, position))
        # the two rows' seed values, pooled, in the two-sample formula
        expected = seeds_for_power(after.mean() - before.mean(), before, after)
        assert dev["seeds_needed"].iloc[position] == expected >= 2
    assert np.isnan(dev["seeds_needed"].iloc[0])
    shown = int(dev["seeds_needed"].iloc[1]) if np.isfinite(dev["seeds_needed"].iloc[1]) else "∞"
    lines = (report.folder / "report.md").read_text().splitlines()
    header = [c.strip() for c in next(li for li in lines if li.startswith("| Iteration |"))
              .split("|")]
    line = next(li for li in lines if li.startswith(f"| {dev['iteration'].iloc[1]} |"))
    # the Markdown row shows the seeds it needs under `Seeds 80%`
    assert line.split("|")[header.index("Seeds 80%")].strip() == str(shown)


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


def _cell_styles(page: str, table: str) -> dict[tuple[int, int], set[str]]:
    """(row, column) -> the CSS declarations Styler gave that cell of table `table`."""
    out: dict[tuple[int, int], set[str]] = {}
    # the style sheets only: over the whole page (figures inlined) the rule pattern is quadratic
    sheets = "".join(re.findall(r"<style[^>]*>(.*?)</style>", page, re.S))
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", sheets):
        declarations = {d.strip() for d in body.split(";") if d.strip()}
        for row, col in re.findall(rf"#T_{table}_row(\d+)_col(\d+)", selectors):
            out.setdefault((int(row), int(col)), set()).update(declarations)
    return out


def test_html_numbers_right_aligned_best_in_bold(report: ReportResult) -> None:
    page = (report.folder / "report.html").read_text()
    dev = report.tables["dev"]
    header = re.search(r'<table id="T_dev".*?</thead>', page, re.S)
    assert header is not None
    columns = re.findall(r'class="col_heading level0 col\d+" >([^<]*)</th>', header.group())
    styles = _cell_styles(page, "dev")
    overall = columns.index("Overall")
    best = int(dev["overall"].to_numpy().argmax())
    # the best mean of a metric column is bold, the others are not
    for row in range(len(dev)):
        assert ("font-weight: bold" in styles[(row, overall)]) == (row == best)
    # numbers are right-aligned, and no number wraps: a score keeps its two lines whole
    for name, lines in (("SST acc", "pre"), ("Overall", "pre"), ("Δ prev", "nowrap"),
                        ("p (Holm)", "nowrap")):
        assert {"text-align: right", f"white-space: {lines}"} <= styles[(0, columns.index(name))]
    # the row's change is under its name (a line of its own), not a column
    assert "white-space: pre-line" in styles[(0, columns.index("Iteration"))]
    assert "Change" not in columns
    # the interval is in the cell, under mean ± sd (marked wide: 2 seeds)
    cell = re.search(rf'id="T_dev_row{best}_col{overall}"[^>]*>([^<]*)<', page)
    assert cell is not None and re.fullmatch(
        r"\d\.\d{3} ± \d\.\d{3} ‡\n\[\d\.\d{3}, \d\.\d{3}\]", cell.group(1))


def test_paper_iterations_are_shown_beside_the_published_scores(report: ReportResult) -> None:
    published = report.tables["published"]
    # it1, it3 and it4 are paper iterations: the paper's dev numbers, as published
    assert published["iteration"].tolist() == ORDER
    assert published[["sst_acc", "para_acc", "sts_corr", "mean_score"]].to_numpy().tolist() == [
        [0.391, 0.380, -0.009, 0.254], [0.525, 0.403, 0.293, 0.407],
        [0.441, 0.783, 0.377, 0.534]]
    assert published["published_delta"].iloc[1:].tolist() == pytest.approx([0.153, 0.127])
    dev = report.tables["dev"].set_index("iteration")
    # ours are our own means, and the deltas' signs are compared
    assert published["ours_mean_score"].tolist() == dev.loc[ORDER, "mean_score"].tolist()
    for row in published.iloc[1:].itertuples():
        assert row.same_sign == (np.sign(row.ours_delta) == np.sign(row.published_delta))
    # the published numbers stay out of our statistics
    assert not np.isin([0.254, 0.407, 0.534], dev["mean_score"].to_numpy()).any()
    markdown = (report.folder / "report.md").read_text()
    assert "## Beside the paper" in markdown and "| Mean (paper) published |" in markdown


def test_learning_curves_of_equal_scores_do_not_hide_each_other() -> None:
    from mtl_tune.reports._figures import DODGE

    rows = [{"iteration": name, "trial_id": f"{name}-0", "epoch": epoch, "metric": metric,
             "value": 0.5}
            for name in ("it1-baseline", "it3-cosine-sts") for epoch in (1, 2)
            for metric in ("SST acc", "PD acc", "STS r", "Overall")]
    figure = draw_learning_curves(pd.DataFrame(rows), ["it1-baseline", "it3-cosine-sts"])
    lines = [line for line in figure.axes[0].get_lines() if len(line.get_xdata()) == 2]
    xs = sorted(tuple(line.get_xdata()) for line in lines)
    # the same values, drawn side by side: each iteration shifted along x, with its own marker
    assert xs == [pytest.approx((1 - DODGE / 2, 2 - DODGE / 2)),
                  pytest.approx((1 + DODGE / 2, 2 + DODGE / 2))]
    assert len({line.get_marker() for line in lines}) == 2


def test_a_full_disk_during_the_report_is_one_error_line(study: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mtl_tune.cli import app
    from tests.helpers import tmpfs

    # the figures alone need more than 256 KiB
    with tmpfs(tmp_path / "disk", "size=256k") as disk:
        out = disk / "report"
        result = CliRunner().invoke(app, ["report", "ablation", study.name, "--storage",
                                          str(study.parent), "--out", str(out),
                                          "--resamples", "50"])
        # exit 1, one line naming the device's folder and the fix, no traceback
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.stderr.startswith(
            f"Error: no space left on the device holding {disk} while writing the report {out} (")
        assert "free some space and run the report again; nothing of it was kept" in result.stderr
        # no half report is left behind
        assert list(disk.iterdir()) == []


def test_no_interval_leaves_its_metrics_range_and_two_seeds_are_marked_wide(
    report: ReportResult, study: Path
) -> None:
    from mtl_tune.reports import collect_score_bars
    from mtl_tune.reports._figures import TASK_LABELS

    dev = report.tables["dev"]
    for key, (low, high) in METRIC_RANGES.items():
        # every interval of the table within the values its metric can take
        assert ((dev[f"{key}_ci_low"] >= low) & (dev[f"{key}_ci_high"] <= high)).all(), key
    # and so every whisker of the figure
    bars = collect_score_bars(dev, best_epochs(load_results(study), "overall", "max")).summary
    for key, (low, high) in METRIC_RANGES.items():
        mine = bars[bars["metric"] == TASK_LABELS[key]]
        assert len(mine) == 3 and (mine["ci_low"] >= low).all() and (mine["ci_high"] <= high).all()
    # two seeds of a random model: some t interval (df = 1) was cut, and says so
    methods = {m for key in METRIC_RANGES for m in dev[f"{key}_ci_method"]}
    assert any(", cut to [" in m for m in methods), methods
    # each 2-seed cell carries the wide mark, explained in a note
    cells = report.displays["dev"][1]
    assert cells["Overall"].str.endswith(" ‡").all()
    assert any(n.startswith("‡: a row of 2 seeds") for n in report.notes)
