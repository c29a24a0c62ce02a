"""The ablation report: dev table, test table, figures, one HTML page, Markdown, LaTeX, CSV."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pandas as pd

from mtl_tune.exceptions import ConfigError, DataError
from mtl_tune.names import SCORES, score_name
from mtl_tune.platform.config import DATA_ENV
from mtl_tune.reports._dev_table import add_significance, dev_table
from mtl_tune.reports._display import WIDE, dev_display, heldout_display, published_display
from mtl_tune.reports._environment import environment
from mtl_tune.reports._figures import (
    collect_learning_curves,
    collect_score_bars,
    draw_learning_curves,
    draw_score_bars,
)
from mtl_tune.reports._headline import headline
from mtl_tune.reports._optuna import load_optuna_study, searched_params
from mtl_tune.reports._output import FORMATS, ReportResult, check_formats, report_folder
from mtl_tune.reports._paired import MARK_LEGEND
from mtl_tune.reports._published import SOURCE, published_table
from mtl_tune.reports._search import add_search_figures
from mtl_tune.reports._selection import row_order
from mtl_tune.reports._stats import (
    ALPHA,
    BOOTSTRAP_FROM,
    FEW_SEEDS,
    IQM_FROM,
    POWER,
    SD_BOUND_LEVEL,
)
from mtl_tune.reports._study_notes import (
    DAGGER_NOTE,
    diverged_notes,
    error_notes,
    require_scored,
    summary,
    unfinished_note,
)
from mtl_tune.reports._test_table import PREDICTIONS_DIR, evaluate_test_split
from mtl_tune.reports._variance import add_variance
from mtl_tune.reports._writer import ReportWriter
from mtl_tune.studies import (
    DIVERGED,
    StudyInfo,
    best_epochs,
    best_rerun,
    mark_diverged,
    open_study,
    study_results,
    trivial_baselines,
)

LEADERBOARD_FILES = "sst-test-output.csv, para-test-output.csv, sts-test-output.csv"


def _test_data_dir(
    data_dir: Path | str | None, info: StudyInfo, dev: pd.DataFrame, results: pd.DataFrame
) -> tuple[Path | None, str | None]:
    """The test files' folder: the argument, else the study's, the trials', $MTL_TUNE_DATA."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), None
    best = results[results["trial_id"].isin(dev["best_trial_id"].dropna())]
    configured = best["config/data_dir"].dropna().tolist() if "config/data_dir" in best else []
    candidates = [info.data_dir, *dict.fromkeys(configured), os.environ.get(DATA_ENV)]
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_dir():
            return Path(candidate).expanduser(), None
    tried = ", ".join(str(c) for c in candidates if c) or "none"
    return None, (
        f"No test table: no data folder with the test files was found (tried: {tried}); "
        "pass data_dir (--data-dir)."
    )


def _dev_notes(info: StudyInfo, dev: pd.DataFrame, n_resamples: int, seed: int) -> list[str]:
    notes = [
        f"Each trial enters at its best epoch by dev {score_name(info.metric)} ({info.mode}). "
        "Cells: mean ± "
        "sample std (ddof=1) over the row's trials (seeds); the HTML page adds [95% CI] of the "
        f"mean over seeds: Student's t interval for rows of 2 to {BOOTSTRAP_FROM - 1} seeds, a "
        f"BCa bootstrap from {BOOTSTRAP_FROM} seeds on ({n_resamples} resamples, seed {seed}), "
        "cut to the values the metric can take (accuracies and Overall in [0, 1], STS Pearson "
        "r in [-1, 1], Mean (paper) in [-1/3, 1]); dev.csv holds every number at full "
        "precision and each interval's method.",
        "Scores: " + "; ".join(f"{name} = {what}" for name, what in SCORES.values()) + ".",
        f"Δ prev / Δ base: the row's mean dev {score_name(info.metric)} minus the previous / "
        "first row's. "
        "The mark on Δ prev tests the row's best checkpoint against the previous row's on the "
        "dev examples: a paired permutation test (each example's two predictions swapped at "
        f"random; statistic: the difference in Overall; {n_resamples} permutations, seed {seed}), "
        "its p-values Holm-Bonferroni adjusted over all the table's comparisons (p (Holm); raw p "
        f"and a paired bootstrap interval of the difference in dev.csv): {MARK_LEGEND}. It "
        "measures the spread over examples of the two best checkpoints, not over seeds.",
        f"Seeds {POWER:.0%}: seeds per row that a two-sample comparison of seed means needs to "
        f"detect the row's Δ prev with {POWER:.0%} power at two-sided α = {ALPHA}: "
        "n = 2 (z(1-α/2) + z(power))² σ² / Δ², at least "
        f"{FEW_SEEDS}; σ the pooled seed sd of the two rows, or, below {BOOTSTRAP_FROM} seeds "
        f"a row, its one-sided {SD_BOUND_LEVEL:.0%} upper confidence bound (chi-square), since "
        "an sd seen on few seeds is often far too small (blank below 2 seeds each). A row "
        f"needing more seeds than it has, or with fewer than {FEW_SEEDS}, is not settled; "
        "`mtl-tune report ablation NAME --seeds-advice` prints the launch that adds them.",
        "P(better): the probability that a seed of the row scores above a seed of the previous "
        f"row on dev {score_name(info.metric)} (every pair of their seeds counted, a tie as "
        "half; Agarwal et al. 2021), with a 95% stratified bootstrap interval (each row's seeds "
        f"resampled on their own, {n_resamples} resamples, seed {seed}). It says how often the "
        "change wins, where Δ says by how much and p whether it is real; 0.5 is a coin toss, "
        "and with few seeds the interval is wide.",
        f"{dev['device'].iloc[0] if len(dev) else 'CPU'}-h: the device-hours the row's trials "
        "used, each trial's wall time times the GPUs it held (the CPUs, on a study without "
        "GPUs), running and stopped trials included: the compute behind the row.",
    ]
    if (dev["n"] >= IQM_FROM).any():
        notes.append(f"IQM (HTML; overall_iqm and mean_score_iqm in dev.csv): for a row of "
                     f"{IQM_FROM} seeds or more, the mean of the middle half of its seeds' "
                     "Overall and Mean (paper) (a quarter trimmed from each end; Agarwal et al. "
                     "2021): a seed or two far from the rest move it less than the mean. Where "
                     "it and the mean differ much, look for a diverged or lucky seed.")
    if (dev["n"] == 2).any():
        notes.append(f"{WIDE}: a row of 2 seeds; its sd and interval rest on two values "
                     "(Student's t with 1 degree of freedom: 12.7 sd/√2 each side) and are "
                     "wide; read them as rough.")
    if not dev["complete"].all():
        notes.append(DAGGER_NOTE)
    return notes


def report_ablation(
    study_folder: Path | str,
    out: Path | str | None = None,
    formats: tuple[str, ...] = FORMATS,
    force: bool = False,
    data_dir: Path | str | None = None,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    device: str = "auto",
    drop_diverged: bool = False,
) -> ReportResult:
    """Writes the ablation report of a study: dev and test tables in the paper's shape, figures.

    Args:
        study_folder: The study folder (`<storage>/<study-name>`); finished or still running.
        out: The report folder; None makes `<study>/reports/ablation-YYYYmmdd-HHMMSS[-N]`.
        formats: Among "md", "latex", "csv", "html" (figures are always written).
        force: Write into `out` even if it exists and is not empty.
        data_dir: The folder with the test files (default: study.json's data_dir, the best
            trials' data_dir, then $MTL_TUNE_DATA).
        n_resamples: Resamples of both bootstraps (CI over seeds; paired test over examples).
        seed: Seed of both bootstraps.
        device: Where the test split is evaluated: "auto", "cpu" or "cuda".
        drop_diverged: Leave the diverged trials (`mark_diverged`) out of every table and mean;
            by default they are counted and flagged.

    Returns:
        The folder, the tables ("dev", "test") as DataFrames, the figures and the files written.

    Raises:
        MtlTuneError: Not a study folder, `out` is not empty and `force` is False, or the given
            `data_dir` does not exist.
        ConfigError: An unknown format, or `n_resamples < 1`.
    """
    formats = check_formats(formats)
    if n_resamples < 1:
        raise ConfigError(f"`n_resamples >= 1` must hold, but got n_resamples={n_resamples}")
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise DataError(f"test data folder {data_dir} does not exist; check --data-dir")
    info = open_study(study_folder)
    results = study_results(info)
    require_scored(info, results)
    results = mark_diverged(results, trivial_baselines(info.data_dir))
    dropped = int(results.loc[results[DIVERGED], "trial_id"].nunique()) if drop_diverged else 0
    if drop_diverged:
        results = results[~results[DIVERGED]]
        require_scored(info, results)
    info = replace(info, notes=(*info.notes, *diverged_notes(results, dropped)))
    with report_folder(info.folder, "ablation", out, force) as staged:
        return staged.put_in_place(
            _write_ablation(staged.folder, info, results, formats, data_dir, n_resamples, seed,
                            device)
        )


def _write_ablation(
    folder: Path, info: StudyInfo, results: pd.DataFrame, formats: tuple[str, ...],
    data_dir: Path | str | None, n_resamples: int, seed: int, device: str,
) -> ReportResult:
    """Writes the ablation report's files in `folder` (see `report_ablation`)."""
    from mtl_tune.platform.presets import PRESETS

    writer = ReportWriter(folder, f"Ablation report: {info.name}", formats, info.simulated)
    order = row_order([*info.trainables, *results["trainable"]], list(PRESETS))
    descriptions = {name: preset.description for name, preset in PRESETS.items()}
    dev = dev_table(results, order, info.metric, info.mode, descriptions, n_resamples, seed)
    dev, significance_notes = add_significance(dev, n_resamples, seed)
    writer.headline(headline(dev, info.metric, info.mode))
    writer.table("dev", "Dev table", dev, lambda style: dev_display(dev, style),
                 _dev_notes(info, dev, n_resamples, seed) + significance_notes)
    add_variance(writer, best_epochs(results, info.metric, info.mode), order, info.metric,
                 n_resamples, seed)
    published = published_table(dev)
    if published is not None:
        writer.table(
            "published", "Beside the paper", published,
            lambda style: published_display(published, style),
            [f"Published: {SOURCE}; its \"Overall\" is our Mean (paper), the plain mean of SST "
             "acc, PD acc and STS r. Shown for comparison only: no published number enters our "
             "statistics. Δ: Mean (paper) minus the previous row's of this table; Same sign: our "
             "Δ goes the paper's way. The last column: the device-hours our row's trials used "
             "(the paper's compute is not published)."],
        )

    test_folder, missing = (
        (None, "No test table: a simulated study's trials trained no model to score on the "
               "test split.") if info.simulated else _test_data_dir(data_dir, info, dev, results))
    notes = [*info.notes, *error_notes(results)]
    if test_folder is not None:
        test = evaluate_test_split(dev, test_folder, folder, info.metric, device=device,
                                   study=info.folder)
        test_notes = [
            f"Each row: its best checkpoint by dev {score_name(info.metric)} over its trials "
            "(the dev "
            f"table's best trial at its best epoch), evaluated on the test split of {test_folder}. "
            "Device-hours: the training behind the row (its trials', as in the dev table); "
            "scoring the test split adds seconds."
        ]
        if test["cached"].any():
            test_notes.append(
                f"{int(test['cached'].sum())} of {len(test)} checkpoints' test scores were read "
                "from the study's cache (cache/test-scores/, keyed by trial, epoch and the test "
                "files' hash), not re-scored."
            )
        if not test["labeled"].all():
            test_notes.append(
                "Where the test files have no labels the scores are empty; each row's course "
                f"leaderboard files ({LEADERBOARD_FILES}) are in {PREDICTIONS_DIR}/<iteration>/."
            )
        else:
            test_notes.append(
                f"Each row's leaderboard files are in {PREDICTIONS_DIR}/<iteration>/."
            )
        writer.table("test", "Test table", test, lambda style: heldout_display(test, style),
                     test_notes)
        for path in sorted((folder / PREDICTIONS_DIR).rglob("*.csv")):
            writer.add_file(path)
    elif missing:
        notes.append(missing)

    best = best_epochs(results, info.metric, info.mode)
    writer.figure("dev_scores", draw_score_bars(collect_score_bars(dev, best)),
                  "Dev scores by iteration: mean over seeds, 95% CI (t below "
                  f"{BOOTSTRAP_FROM} seeds, else BCa bootstrap), one dot per seed")
    writer.figure("learning_curves",
                  draw_learning_curves(collect_learning_curves(results, order), order),
                  "Dev learning curves by iteration (mean over seeds, band: ± sd)")
    if info.search != "grid":
        optuna_study = load_optuna_study(info)
        params = searched_params(optuna_study, results)
        _, optuna_notes = add_search_figures(writer, info, best, params, optuna_study)
        notes += optuna_notes
    if "csv" in formats:
        path = folder / "results.csv"
        results.to_csv(path, index=False)
        writer.add_file(path)
    rerun = best_rerun(results, info.metric, info.mode)
    if rerun is not None:
        notes.append(rerun)
    pending = unfinished_note(info, results)
    if pending:
        notes.append(pending)
    return writer.finish(summary(info, results), notes, info.spec_text, environment(results, info))
