"""Numeric report tables -> tables of display strings, per output style (md, latex, html).

Markdown and LaTeX give mean ± sample std; HTML adds the 95% CI of the mean over seeds. Every
number is rounded to 3 decimals here and only here: the CSV files keep full precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from mtl_tune.names import SCORE_NAMES, state_name
from mtl_tune.reports._stats import FEW_SEEDS

STYLES = ("md", "latex", "html")
METRIC_LABELS = SCORE_NAMES  # one name per score in every table (mtl_tune.names)
DAGGER = "†"
DIVERGED_MARK = "§"  # before the count of a row's diverged trials
WIDE = "‡"  # a spread over fewer than FEW_SEEDS seeds


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The display columns of a metric (higher is better): "SST acc", "Mean (paper)", ..."""
    labels = tuple(METRIC_LABELS.values())
    return [str(c) for c in frame.columns if str(c).startswith(labels)]


def check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, but got {style!r}")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def number(value: Any, signed: bool = False) -> str:
    if _missing(value):
        return "–"
    return f"{float(value):+.3f}" if signed else f"{float(value):.3f}"


def p_text(value: Any) -> str:
    if _missing(value):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def seeds_text(value: Any) -> str:
    if _missing(value):
        return "–"
    return "∞" if math.isinf(value) else str(int(value))


def param_text(value: Any) -> str:
    if _missing(value):
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def display_frame(rows: list[dict[str, str]], style: str) -> pd.DataFrame:
    """Display rows as a frame of plain strings (each format escapes its own)."""
    return pd.DataFrame(rows)


def _spread(row: Any, key: str, style: str) -> str:
    n = int(row.n)
    mean = getattr(row, key)
    if n == 0 or _missing(mean):
        return "–"
    if n == 1:
        return number(mean)
    text = f"{number(mean)} ± {number(getattr(row, f'{key}_std'))}"
    if n < FEW_SEEDS:
        text += f" {WIDE}"
    if style == "html":  # the interval on a line of its own, under mean ± sd
        low, high = getattr(row, f"{key}_ci_low"), getattr(row, f"{key}_ci_high")
        text += f"\n[{number(low)}, {number(high)}]"
        iqm = getattr(row, f"{key}_iqm", None)
        if not _missing(iqm):  # an aggregate over 5 seeds or more
            text += f"\nIQM {number(iqm)}"
    return text


def dev_display(dev: pd.DataFrame, style: str) -> pd.DataFrame:
    """The dev table's display strings (mean ± std; HTML adds [95% CI] on a second line and
    puts each row's change under its name)."""
    check_style(style)
    rows = []
    for row in dev.itertuples(index=False):
        out = {"Iteration": str(row.iteration)}
        if style == "html":  # what the row changes, under its name: no column to squeeze
            out["Iteration"] += f"\n{row.description}" if row.description else ""
        elif style == "md":
            out["Change"] = str(row.description)
        out["Trials"] = row.trials + ("" if row.complete else f" {DAGGER}")
        if getattr(row, "diverged", 0):  # how many of its trials diverged (`mark_diverged`)
            out["Trials"] += ("\n" if style == "html" else " ") + f"{DIVERGED_MARK}{row.diverged}"
        for key, label in METRIC_LABELS.items():
            out[label] = _spread(row, key, style)
        mark = row.mark if hasattr(row, "mark") else ""
        delta = number(row.delta_prev, signed=True)
        out["Δ prev"] = f"{delta} {mark}".strip() if mark else delta
        out["Δ base"] = number(row.delta_base, signed=True)
        if hasattr(row, "p_holm"):
            out["p (Holm)"] = p_text(row.p_holm)
        out["Seeds 80%"] = seeds_text(row.seeds_needed)
        if hasattr(row, "p_better"):
            out["P(better)"] = _better(row, style)
        if hasattr(row, "device_hours"):
            out[f"{row.device}-h"] = hours_text(row.device_hours)
        rows.append(out)
    return display_frame(rows, style)


def _better(row: Any, style: str) -> str:
    """A probability to two places (a share of seed pairs), its interval after it."""
    if _missing(row.p_better):
        return "–"
    if _missing(row.p_better_ci_low):
        return f"{row.p_better:.2f}"
    interval = f"[{row.p_better_ci_low:.2f}, {row.p_better_ci_high:.2f}]"
    return f"{row.p_better:.2f}" + ("\n" if style == "html" else " ") + interval


def hours_text(hours: float) -> str:
    """Device-hours to two significant figures."""
    return "–" if _missing(hours) else f"{hours:.2g}"


def heldout_display(test: pd.DataFrame, style: str) -> pd.DataFrame:
    """The test table's display strings."""
    check_style(style)
    rows = []
    for row in test.itertuples(index=False):
        checkpoint = "–" if _missing(row.trial_id) else f"{row.trial_id} @ epoch {row.epoch}"
        out = {"Iteration": str(row.iteration), "Checkpoint": checkpoint}
        for key, label in METRIC_LABELS.items():
            out[label] = number(getattr(row, key))
        out["Δ prev"] = number(row.delta_prev, signed=True)
        out["Δ base"] = number(row.delta_base, signed=True)
        out["Note"] = str(row.note)
        if hasattr(row, "device_hours"):  # the training behind the row
            out[f"{row.device}-h"] = hours_text(row.device_hours)
        rows.append(out)
    return display_frame(rows, style)


def published_display(table: pd.DataFrame, style: str) -> pd.DataFrame:
    """Ours beside the paper's published dev scores, and whether each Δ has the paper's sign."""
    check_style(style)
    rows = []
    for row in table.itertuples(index=False):
        same = "–" if _missing(row.same_sign) else ("yes" if row.same_sign else "no")
        rows.append({
            "Iteration": str(row.iteration),
            f"{SCORE_NAMES['sst_acc']} published": number(row.sst_acc),
            f"{SCORE_NAMES['para_acc']} published": number(row.para_acc),
            f"{SCORE_NAMES['sts_corr']} published": number(row.sts_corr),
            f"{SCORE_NAMES['mean_score']} published": number(row.mean_score),
            f"{SCORE_NAMES['mean_score']} ours": number(row.ours_mean_score),
            "Δ published": number(row.published_delta, signed=True),
            "Δ ours": number(row.ours_delta, signed=True),
            "Same sign": same,
            **({f"{row.device}-h ours": hours_text(row.device_hours)}
               if hasattr(row, "device_hours") else {}),
        })
    return display_frame(rows, style)


def top_display(top: pd.DataFrame, params: Sequence[str], style: str) -> pd.DataFrame:
    """The search report's top-k table: rank, trial, searched values, best-epoch metrics."""
    check_style(style)
    rows = []
    for row in top.to_dict("records"):
        out = {
            "Rank": str(row["rank"]),
            "Trial": f"{row['experiment']}/{row['trial_id']}",
            "Trainable": str(row["trainable"]),
        }
        for param in params:
            if param != "trainable":  # a searched trainable is the Trainable column
                out[param] = param_text(row.get(f"config/{param}"))
        out["Epoch"] = str(row["epoch"])
        for key, label in METRIC_LABELS.items():
            out[label] = number(row[key])
        out["Status"] = state_name(str(row["status"])) + (", diverged" if row.get("diverged")
                                                          else "")
        if "device_hours" in row:
            out[f"{row['device']}-h"] = hours_text(row["device_hours"])
        rows.append(out)
    return display_frame(rows, style)


def importance_display(importances: pd.DataFrame, style: str) -> pd.DataFrame:
    check_style(style)
    trials = importances["trials"] if "trials" in importances else [None] * len(importances)
    rows = [
        {"Parameter": str(param), "Importance": number(value),
         "Trials": "–" if count is None else str(int(count))}
        for param, value, count in zip(importances["param"], importances["importance"], trials,
                                       strict=True)
    ]
    columns = ["Parameter", "Importance", "Trials"]
    return display_frame(rows, style) if rows else pd.DataFrame(columns=columns)
