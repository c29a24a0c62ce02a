"""The search report: the top-k configurations, Optuna's parameter importances, search figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_tune.exceptions import ConfigError, MtlTuneError
from mtl_tune.names import score_name
from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.reports._budget import add_budget, budget_curve, budget_points, trial_hours
from mtl_tune.reports._confirm import add_confirm
from mtl_tune.reports._display import importance_display, top_display
from mtl_tune.reports._environment import environment
from mtl_tune.reports._optuna import (
    importances,
    load_optuna_study,
    log_scaled,
    optuna_history,
    searched_params,
)
from mtl_tune.reports._output import FORMATS, ReportResult, check_formats, report_folder
from mtl_tune.reports._pareto import draw_pareto, pareto_front
from mtl_tune.reports._population import add_population, tree_key
from mtl_tune.reports._search_figures import (
    collect_history,
    collect_param_effects,
    draw_history,
    draw_importances,
    draw_param_effects,
)
from mtl_tune.reports._seed_groups import (
    GROUP_COLUMN,
    decision_display,
    decision_table,
    group_display,
    group_table,
    has_seed_groups,
)
from mtl_tune.reports._study_notes import (
    diverged_notes,
    error_notes,
    require_scored,
    summary,
    unfinished_note,
)
from mtl_tune.reports._writer import ReportWriter
from mtl_tune.studies import (
    CONFIRM,
    StudyInfo,
    best_epochs,
    best_rerun,
    best_row,
    group_decisions,
    mark_diverged,
    open_study,
    study_results,
    trivial_baselines,
)


def top_configurations(
    best: pd.DataFrame, params: list[str], metric: str, mode: str, top_k: int
) -> pd.DataFrame:
    """The `top_k` trials by their best dev `metric`: rank, identity, searched values, metrics."""
    ranked = best.sort_values(metric, ascending=mode == "min", kind="stable").head(top_k)
    columns = ["experiment", "trial_id", "trainable", "status", "epoch"]
    columns += [f"config/{p}" for p in params if f"config/{p}" in ranked]
    columns += [*METRIC_KEYS, "checkpoint"]
    top = ranked[columns].reset_index(drop=True)
    top.insert(0, "rank", range(1, len(top) + 1))
    return top


def add_search_figures(
    writer: ReportWriter,
    info: StudyInfo,
    best: pd.DataFrame,
    params: list[str],
    optuna_study: Any | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Draws the metric against each searched parameter, the importances and the history.

    Args:
        writer: The report being written.
        info: The study.
        best: Each counted trial at its best epoch (`best_epochs`).
        params: The searched parameters (`searched_params`).
        optuna_study: The study's Optuna mirror, if any.

    Returns:
        The importances and the notes on what could not be drawn from Optuna.
    """
    effects = collect_param_effects(best, params, info.metric)
    plot = draw_param_effects(effects, info.metric, log_scaled(optuna_study))
    writer.figure("param_effects", plot,
                  f"Best dev {score_name(info.metric)} of each trial against each searched "
                  "parameter")
    ranking, note = importances(optuna_study, info.metric)
    notes = [note] if note else []
    partial = sorted(set(params) - set(ranking["param"])) if not ranking.empty else []
    if partial:
        notes.append(
            "Importances cover the parameters that vary over at least 2 completed Optuna "
            f"trials that set them; {', '.join(partial)} did not and is left out."
        )
    if not ranking.empty:
        writer.figure("param_importances", draw_importances(ranking),
                      "Optuna parameter importances (fANOVA, seed 0); a parameter set in only "
                      "some trials (a conditional one) is weighed among those trials")
    if optuna_study is not None:
        history = collect_history(optuna_history(optuna_study, info.metric)["value"], info.mode)
        source = "the value Optuna recorded for each trial, in the order it was told"
    else:
        values = best.sort_values(["experiment", "trial_id"])[info.metric]
        history = collect_history(values, info.mode)
        source = "Ray trials in trial-id order (no optuna.db)"
    writer.figure("optimization_history", draw_history(history, info.metric),
                  f"Optimization history: {score_name(info.metric)} of each trial and the best "
                  "so far "
                  f"({source})")
    return ranking, notes


def _add_seed_groups(
    writer: ReportWriter, info: StudyInfo, results: pd.DataFrame, params: list[str]
) -> pd.DataFrame:
    """Each configuration on the mean of its seeds, and the scheduler's decisions; returns the
    configurations (`group_table`)."""
    decisions = group_decisions(info.folder)
    groups = group_table(results, decisions, params, info.metric, info.mode)
    writer.table(
        "seed_groups", "Configurations on the mean of their seeds", groups,
        lambda style: group_display(groups, params, info.metric, style),
        [f"Each configuration ran once per seed (a seed group); it is ranked and was judged on "
         f"the mean dev {score_name(info.metric)} of its seeds (± the sample sd over seeds at "
         "that epoch), at "
         "the epoch whose mean is best, among the epochs every seed reached; this is the value "
         "Optuna was told. The top table above lists single seeds. Device-hours: the group's "
         "seeds' wall time times the devices each held."],
    )
    table = decision_table(decisions)
    writer.table(
        "rung_decisions", "Seed-group decisions, in the order the scheduler made them", table,
        lambda style: decision_display(table, style),
        ["At each rung (ASHA's, applied to groups) and, with patience, each epoch, a group "
         "waited until each running seed reached it (the first ones paused), then was judged "
         "once on its seeds' mean: stopped below the cutoff (the 1 - 1/reduction_factor "
         "quantile of the means recorded there before it) or when patience ran out. From the "
         "study's seed-groups.jsonl."],
    )
    return groups


def _best_rerun_notes(info: StudyInfo, results: pd.DataFrame,
                      groups: pd.DataFrame | None) -> list[str]:
    """The best trial to train again: in a seed-group search, the best seed of the
    configuration ranked first on its seeds' mean (a lucky seed of another one is not the
    search's answer), with a word when the best single seed lies elsewhere."""
    if groups is None or groups.empty:
        rerun = best_rerun(results, info.metric, info.mode)
        return [] if rerun is None else [rerun]
    top = groups.iloc[0]["group"]
    rerun = best_rerun(results[results[GROUP_COLUMN] == top], info.metric, info.mode)
    if rerun is None:
        return []
    notes = ["Best seed of the configuration ranked first on its seeds' mean: trial "
             + rerun.removeprefix("Best single trial ")]
    lucky = best_row(results, info.metric, info.mode)
    if lucky[GROUP_COLUMN] != top:
        rank = list(groups["group"]).index(lucky[GROUP_COLUMN]) + 1 if (
            lucky[GROUP_COLUMN] in set(groups["group"])) else None
        notes.append(
            f"The best single seed, trial {lucky['trial_id']} (dev {score_name(info.metric)} "
            f"{float(lucky[info.metric]):.4f}), belongs to a configuration ranked "
            f"{rank if rank is not None else 'lower'} on its seeds' mean: one lucky seed, not the "
            "search's answer."
        )
    return notes


def _add_pareto(
    writer: ReportWriter, info: StudyInfo, best: pd.DataFrame, params: list[str], groups: bool
) -> None:
    """The non-dominated configurations of a multi-objective study, and the pairwise figure:
    a point per trial at its best epoch, or per seed group at the best epoch of its means."""
    points = pareto_front(best, info.objectives)
    on_front = points[points["on_front"]]
    unit = "seed group (its seeds' means)" if groups else "trial"
    if groups:
        front = on_front.sort_values(info.metric, ascending=info.mode == "min", kind="stable")
        front = front.assign(rank=range(1, len(front) + 1)).reset_index(drop=True)
        display = partial(group_display, front, params, info.metric)
    else:
        front = top_configurations(on_front, params, info.metric, info.mode, len(points))
        display = partial(top_display, front, params)
    axes = ", ".join(f"{name} ({mode})" for name, mode in info.objectives)
    notes = [
        f"Objectives: {axes}. Each {unit} is one point: its objectives at its best epoch by dev "
        f"{info.metric} (the scalar ASHA and patience prune on), as in the Optuna record. A "
        "configuration is on the front when no other point is at least as good on every "
        f"objective and better on one; {int(points['on_front'].sum())} of {len(points)} "
        "are. Ranked by dev " + info.metric + ".",
    ]
    writer.table("pareto", "Pareto front (non-dominated configurations)", front, display, notes)
    writer.figure("pareto_front", draw_pareto(points, info.objectives),
                  f"Pareto front over {axes}: every {unit} at its best epoch, the front in red")


def report_search(
    study_folder: Path | str,
    out: Path | str | None = None,
    top_k: int = 10,
    formats: tuple[str, ...] = FORMATS,
    force: bool = False,
    compare: Sequence[Path | str] = (),
    color_by: str | None = None,
) -> ReportResult:
    """Writes the report of a search study: top-k configurations, importances, search figures.

    Args:
        study_folder: The study folder (`<storage>/<study-name>`); finished or still running.
        out: The report folder; None makes `<study>/reports/search-YYYYmmdd-HHMMSS[-N]`.
        top_k: How many configurations the table lists.
        formats: Among "md", "latex", "csv", "html".
        force: Write into `out` even if it exists and is not empty.
        compare: Other studies' folders, whose expected-best curves are drawn over this one's
            and set beside it (the same metric and mode; not a population).
        color_by: The mutated key a population's family tree is coloured by (default lr).

    Returns:
        The folder, the tables ("top", "importances") as DataFrames and the files written.

    Raises:
        MtlTuneError: Not a study folder, or `out` is not empty and `force` is False.
        ConfigError: An unknown format, `top_k < 1`, or `color_by` not a mutated key.
    """
    if top_k < 1:
        raise ConfigError(f"`top_k >= 1` must hold, but got top_k={top_k}")
    formats = check_formats(formats)
    info = open_study(study_folder)
    results = study_results(info)
    require_scored(info, results)
    results = mark_diverged(results, trivial_baselines(info.data_dir))
    if compare and info.search == "pbt":
        raise MtlTuneError(f"study {info.name!r} is a population: one run of its budget, not n "
                           "trials drawn from a search; it has no expected-best curve")
    others = {name: curve for name, curve in (_budget_of(other, info) for other in compare)}
    key = tree_key(info, color_by)
    with report_folder(info.folder, "search", out, force) as staged:
        return staged.put_in_place(_write_search(staged.folder, info, results, formats, top_k,
                                                 others, key))


def _budget_of(folder: Path | str, this: StudyInfo) -> tuple[str, pd.DataFrame]:
    """Another study's name and expected-best curve, to set beside `this` one's.

    Raises:
        MtlTuneError: Not a study, or one this study's cannot be compared with: another
            metric or mode, a population, or fewer than two finished trials.
    """
    info = open_study(folder)
    if (info.metric, info.mode) != (this.metric, this.mode):
        raise MtlTuneError(
            f"study {info.name!r} ranks by {info.metric} ({info.mode}) and {this.name!r} by "
            f"{this.metric} ({this.mode}): compare searches of the same metric and mode")
    if info.search == "pbt":
        raise MtlTuneError(f"study {info.name!r} is a population: one run of its budget, not "
                           "n trials drawn from a search; it has no expected-best curve")
    results = study_results(info)
    results = results[results["experiment"] != CONFIRM]
    best = best_epochs(results, info.metric, info.mode)
    groups = (group_table(results, group_decisions(info.folder), [], info.metric, info.mode)
              if has_seed_groups(results) else None)
    scores, used, _, _ = budget_points(results, best, groups, GROUP_COLUMN, info.metric)
    if len(scores) < 2:
        raise MtlTuneError(f"study {info.name!r} has {len(scores)} finished trial(s) or group(s): "
                           "its expected best needs at least 2")
    return info.name, budget_curve(scores, used, info.mode)


def _write_search(folder: Path, info: StudyInfo, results: pd.DataFrame,
                  formats: tuple[str, ...], top_k: int,
                  others: Mapping[str, pd.DataFrame] | None = None,
                  tree: str | None = None) -> ReportResult:
    """Writes the search report's files in `folder` (see `report_search`): the search's
    trials ranked, a confirmed study's fresh seeds beside them (`add_confirm`)."""
    writer = ReportWriter(folder, f"Search report: {info.name}", formats, info.simulated)
    every, results = results, results[results["experiment"] != CONFIRM]
    optuna_study = load_optuna_study(info)
    params = searched_params(optuna_study, results)
    best = best_epochs(results, info.metric, info.mode)
    top = top_configurations(best, params, info.metric, info.mode, top_k)
    hours, device = trial_hours(results)
    top["device_hours"] = [float(hours.get((e, t), 0.0))
                           for e, t in zip(top["experiment"], top["trial_id"], strict=True)]
    top["device"] = device
    top_notes = [
        f"Each trial at its best epoch by dev {info.metric} ({info.mode}); finished trials and "
        "running or interrupted trials (best epoch so far) are ranked, trials without an "
        "epoch and errored ones are not.",
        f"{device}-h: the trial's wall time times the {device}s it held.",
        "Searched parameters: " + (", ".join(params) or "none found") + (
            " (from optuna.db)" if optuna_study is not None else " (config keys that vary)"
        ),
    ]
    writer.table("top", f"Top {top_k} configurations by best dev {info.metric}", top,
                 lambda style: top_display(top, params, style), top_notes)
    add_confirm(writer, info, every)
    population_notes = []
    if info.search == "pbt":  # members are judged by the population, not rung by rung
        population_notes = add_population(writer, info, results, tree or "lr")
        groups = None
    else:
        groups = (_add_seed_groups(writer, info, results, params) if has_seed_groups(results)
                  else None)
    if info.search != "pbt":  # a population is one run of the budget, not n draws
        add_budget(writer, results, best, groups, GROUP_COLUMN, info.metric, info.mode,
                   info.name, others)
    if info.objectives:
        _add_pareto(writer, info, best if groups is None else groups, params, groups is not None)
    ranking, optuna_notes = add_search_figures(writer, info, best, params, optuna_study)
    writer.table("importances", "Parameter importances (Optuna, fANOVA)", ranking,
                 lambda style: importance_display(ranking, style),
                 ["Trials: the completed Optuna trials each importance is computed over; a "
                  "parameter set in only some of them (a conditional one) is weighed there, "
                  "against the parameters those trials share.", *optuna_notes])
    if "csv" in formats:
        path = folder / "results.csv"
        every.to_csv(path, index=False)
        writer.add_file(path)
    notes = [*info.notes, *error_notes(results), *diverged_notes(results)]
    notes += population_notes or _best_rerun_notes(info, results, groups)
    pending = unfinished_note(info, results)
    if pending:
        notes.append(pending)
    return writer.finish(summary(info, results), notes, info.spec_text, environment(results, info))
