"""The seed groups of a search: each configuration ranked on the mean of its seeds, and the
decisions the seed-aware scheduler made (from the study's log), for `report search`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.reports._budget import trial_hours
from mtl_tune.reports._display import (
    DIVERGED_MARK,
    METRIC_LABELS,
    check_style,
    display_frame,
    hours_text,
    number,
    param_text,
)
from mtl_tune.studies import COUNTED, EPOCH, SEED_GROUP_KEY, best_epoch, epoch_means

GROUP_COLUMN = f"config/{SEED_GROUP_KEY}"


def has_seed_groups(results: pd.DataFrame) -> bool:
    return GROUP_COLUMN in results and bool(results[GROUP_COLUMN].notna().any())


def group_table(
    results: pd.DataFrame, decisions: Sequence[dict[str, Any]], params: Sequence[str],
    metric: str, mode: str,
) -> pd.DataFrame:
    """One row per seed group, best first: its searched values, its seeds, the epoch whose mean
    `metric` over the seeds is best (the earliest on a tie; epochs every seed reached), the means
    and the spread of `metric` there, where the scheduler stopped it, and the device-hours its
    seeds used (`device_hours`, on `device`)."""
    counted = results[results["status"].isin(COUNTED)]
    hours, device = trial_hours(results)
    rows = []
    for group, frame in counted.groupby(GROUP_COLUMN, sort=False):
        seeds = frame["trial_id"].nunique()
        per_seed = [t.to_dict("records") for _, t in frame.groupby("trial_id")]
        means = epoch_means(per_seed, metric)  # the searcher's and the Optuna record's rule
        if not means:
            continue
        best = best_epoch(means, metric, mode)
        at_best = frame[frame[EPOCH] == best][metric].astype(float)
        first = frame.iloc[0]
        row: dict[str, Any] = {"group": group, "seeds": seeds, "epoch": best,
                               "epochs_run": int(frame[EPOCH].max()),
                               f"{metric}_sd": float(at_best.std(ddof=1)) if seeds > 1 else None}
        row.update({f"config/{p}": first.get(f"config/{p}") for p in params})
        row.update({k: means[best].get(k) for k in METRIC_KEYS})
        row["stopped"] = _stopped(group, decisions)
        row["device_hours"] = float(sum(hours.get((e, t), 0.0) for e, t in frame[
            ["experiment", "trial_id"]].drop_duplicates().itertuples(index=False)))
        row["device"] = device
        if "diverged" in frame:  # seeds whose run diverged (`mark_diverged`)
            row["diverged"] = int(frame.groupby("trial_id")["diverged"].first().sum())
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values(metric, ascending=mode == "min", kind="stable")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.reset_index(drop=True)


def _stopped(group: Any, decisions: Sequence[dict[str, Any]]) -> str:
    """Where the scheduler stopped the group: "rung 1", "patience at 5", or "no"."""
    stops = [d for d in decisions if d["group"] == group and d["decision"] == "stop"]
    if not stops:
        return "no"
    stop = stops[0]  # the numbers are in the decisions table
    return f"patience at {stop['epoch']}" if stop["why"] == "patience" else f"rung {stop['epoch']}"


def group_display(table: pd.DataFrame, params: Sequence[str], metric: str,
                  style: str) -> pd.DataFrame:
    check_style(style)
    rows = []
    for row in table.to_dict("records"):
        out = {"Rank": str(row["rank"]), "Group": str(row["group"])}
        out.update({p: param_text(row.get(f"config/{p}")) for p in params})
        out["Seeds"], out["Epoch"] = str(row["seeds"]), str(row["epoch"])
        if row.get("diverged"):
            out["Seeds"] += f" {DIVERGED_MARK}{row['diverged']}"
        for key, label in METRIC_LABELS.items():
            text = number(row[key])
            if key == metric and row.get(f"{metric}_sd") is not None:
                text += f" ± {number(row[f'{metric}_sd'])}"
            out[label] = text
        out["Stopped"] = str(row["stopped"])
        if "device_hours" in row:
            out[f"{row['device']}-h"] = hours_text(row["device_hours"])
        rows.append(out)
    return display_frame(rows, style)


def decision_table(decisions: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The scheduler's decisions in the order it made them."""
    rows = [{
        "group": d["group"], "epoch": d["epoch"], "rung": bool(d["rung"]),
        "seed_values": [d["seeds"][t] for t in sorted(d["seeds"])], "mean": d["mean"],
        "cutoff": d["cutoff"], "stale": d.get("stale"), "decision": d["decision"],
        "why": d["why"],
    } for d in decisions]
    return pd.DataFrame(rows)


def decision_display(table: pd.DataFrame, style: str) -> pd.DataFrame:
    check_style(style)
    rows = []
    for row in table.to_dict("records"):
        kind = "rung" if row["rung"] else "patience"
        rows.append({
            "Group": str(row["group"]), "Epoch": f"{row['epoch']} ({kind})",
            "Seeds": ", ".join(number(v) for v in row["seed_values"]),
            "Mean": number(row["mean"]), "Cutoff": number(row["cutoff"]),
            "Decision": row["decision"] + (f" ({row['why']})" if row["why"] else ""),
        })
    return display_frame(rows, style)
