"""The expected best score of a search against its budget (Dodge et al. 2019, "Show Your
Work"): E[best dev score among n trials drawn from the study's], for n = 1 .. its trial count,
computed exactly from the finished trials, drawn against trials and against device-hours.

With the trials' scores sorted, v(1) <= ... <= v(N), the best of n trials drawn without
replacement is v(i) with probability C(i-1, n-1) / C(N, n) (the other n-1 among the i-1 below
it), so E[max_n] = sum_i v(i) C(i-1, n-1) / C(N, n): an average over every n-subset of the
study, with no resampling noise. At n = N it is the study's best; at n = 1, its mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import comb

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mtl_tune.names import score_name
from mtl_tune.reports._display import check_style, display_frame, number
from mtl_tune.reports._figures import new_figure
from mtl_tune.reports._writer import ReportWriter


def expected_best(values: Sequence[float], mode: str = "max") -> list[float]:
    """E[best of n] for n = 1 .. len(values), without replacement; "best" is the largest for
    `mode` "max", the smallest for "min".

    Raises:
        ValueError: An unknown `mode`, or a value that is not finite.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be one of ('max', 'min'), but got {mode!r}")
    data = np.asarray(values, dtype=float)
    if not np.isfinite(data).all():
        raise ValueError(f"every value must be finite, but got {data[~np.isfinite(data)][0]}")
    ordered = np.sort(data) if mode == "max" else -np.sort(-data)  # worst first
    total = len(ordered)
    out = []
    for n in range(1, total + 1):
        weights = [comb(i - 1, n - 1) for i in range(1, total + 1)]
        out.append(float(np.dot(ordered, weights)) / comb(total, n))
    return out


def budget_curve(scores: Sequence[float], hours: Sequence[float], mode: str) -> pd.DataFrame:
    """Per n: the expected best score and the device-hours n trials take on average (the
    study's mean per trial, times n)."""
    expected = expected_best(scores, mode)
    per_trial = float(np.mean(hours)) if len(hours) else float("nan")
    return pd.DataFrame({"trials": range(1, len(expected) + 1), "expected_best": expected,
                         "device_hours": [n * per_trial for n in range(1, len(expected) + 1)]})


def draw_budget(curves: dict[str, pd.DataFrame], metric: str, device: str) -> Figure:
    """Two panels: the expected best against trials, and against `device`-hours; one curve per
    study (or searcher) in `curves`."""
    figure, (by_trials, by_hours) = new_figure(2, width=3.8)
    for name, curve in curves.items():
        by_trials.plot(curve["trials"], curve["expected_best"], marker="o", markersize=3,
                       label=name)
        by_hours.plot(curve["device_hours"], curve["expected_best"], marker="o",
                      markersize=3, label=name)
    label = f"expected best dev {score_name(metric)}"
    by_trials.set_xlabel("trials")
    by_trials.set_ylabel(label)
    by_hours.set_xlabel(f"{device}-hours")
    by_hours.set_ylabel(label)
    if len(curves) > 1:
        by_trials.legend(fontsize=8)
    return figure


def trial_hours(results: pd.DataFrame) -> tuple[pd.Series, str]:
    """Each trial's device-hours (its wall time times the GPUs it held, else the CPUs), by
    (experiment, trial id), and which device that is ("GPU" or "CPU")."""
    per_trial = results.groupby(["experiment", "trial_id"], sort=False).first()
    seconds = per_trial["trial_seconds"].astype(float).fillna(0.0)
    gpus = per_trial["gpus_per_trial"].astype(float).fillna(0.0)
    if (gpus > 0).any():
        return seconds * gpus / 3600.0, "GPU"
    return seconds * per_trial["cpus_per_trial"].astype(float).fillna(1.0) / 3600.0, "CPU"


def budget_points(results: pd.DataFrame, best: pd.DataFrame, groups: pd.DataFrame | None,
                  group_column: str, metric: str) -> tuple[list[float], list[float], str, str]:
    """The scores a search's budget curve is drawn from, the device-hours of each, what they are
    ("trials" or "seed groups") and the device: the finished trials (`best`: each at its best
    epoch), or the seed groups (`groups`, each at the best epoch of its seeds' mean, as it was
    ranked)."""
    hours, device = trial_hours(results)
    if groups is not None and not groups.empty:
        members = results.groupby(["experiment", "trial_id"], sort=False)[group_column].first()
        spent = hours.groupby(members.reindex(hours.index)).sum()
        used = [float(spent.get(g, 0.0)) for g in groups["group"]]
        return list(groups[metric].astype(float)), used, "seed groups", device
    finished = best[best["status"] == "TERMINATED"]
    used = [float(hours.get((e, t), 0.0)) for e, t in
            zip(finished["experiment"], finished["trial_id"], strict=True)]
    return list(finished[metric].astype(float)), used, "trials", device


def add_budget(writer: ReportWriter, results: pd.DataFrame, best: pd.DataFrame,
               groups: pd.DataFrame | None, group_column: str, metric: str, mode: str,
               name: str = "this study",
               others: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """The expected best against budget, as a figure and a table, of the study's finished
    trials or seed groups (`budget_points`); `others`: the curves (`budget_curve`) of other
    studies, by name, drawn over it and set beside it in a second table (`report search A B`).
    Returns the study's table (empty below two)."""
    scores, used, units, device = budget_points(results, best, groups, group_column, metric)
    if len(scores) < 2:
        return pd.DataFrame()
    curve = budget_curve(scores, used, mode)
    curves = {name: curve, **(others or {})}
    score = score_name(metric)
    writer.figure("expected_best", draw_budget(curves, metric, device),
                  f"Expected best dev {score} of a search of n {units} drawn from "
                  + (f"each study's ({', '.join(curves)})" if others else "this study's")
                  + f", against n and against {device}-hours")
    writer.table("budget", f"Expected best dev {score} against budget", curve,
                 lambda style: _budget_display(curve, device, style),
                 [f"E[best dev {score} among n of the study's {len(scores)} "
                  f"{units}], averaged over every n-subset (exact, Dodge et al. 2019), and the "
                  f"{device}-hours n of them take on average. Compare two searches at the same "
                  "n or the same hours, never one's best against the other's: the best of more "
                  "trials is higher by chance alone. The curve says nothing past the study's "
                  "own count."])
    if others:
        side = pd.DataFrame({"trials": range(1, max(len(c) for c in curves.values()) + 1)})
        for study, other in curves.items():
            side[study] = pd.Series(list(other["expected_best"]), dtype=float)
            side[f"{study} {device}-hours"] = pd.Series(list(other["device_hours"]),
                                                       dtype=float)
        writer.table("budget_compare", f"Expected best dev {score}, study by study", side,
                     lambda style: _compare_display(side, list(curves), device, style),
                     [f"Each study's E[best dev {score} among n of its own], side by side "
                      "at the same n, with the device-hours n of its trials take on average; "
                      "blank past a study's own count. A study ahead at every n is the better "
                      "search at every budget; curves that cross say which budget each wins."])
    return curve


def _compare_display(side: pd.DataFrame, studies: list[str], device: str,
                     style: str) -> pd.DataFrame:
    check_style(style)
    return display_frame([{"n": str(int(r["trials"])), **{
        study: number(r[study]) + (f" ({r[f'{study} {device}-hours']:.3g} {device}-h)"
                                   if pd.notna(r[f"{study} {device}-hours"]) else "")
        for study in studies}}
        for r in side.to_dict("records")], style)


def _budget_display(curve: pd.DataFrame, device: str, style: str) -> pd.DataFrame:
    check_style(style)
    return display_frame([{"n": str(int(r["trials"])), "Expected best": number(
        r["expected_best"]), f"{device}-hours": f"{r['device_hours']:.3g}"}
        for r in curve.to_dict("records")], style)
