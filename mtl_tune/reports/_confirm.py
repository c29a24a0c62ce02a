"""The search report's confirm table (`study confirm`): each re-run configuration's selection
score beside its fresh seeds' mean and interval, and how much of the selection did not hold."""

from __future__ import annotations

import pandas as pd

from mtl_tune.names import score_name
from mtl_tune.reports._budget import trial_hours
from mtl_tune.reports._display import display_frame, number
from mtl_tune.reports._writer import ReportWriter
from mtl_tune.studies import CONFIRM, ConfirmPlan, StudyInfo, confirm_scores


def add_confirm(writer: ReportWriter, info: StudyInfo, results: pd.DataFrame) -> pd.DataFrame:
    """Adds the confirm table of a confirmed study (`results`: every experiment's, the confirm
    experiment's included); returns it (empty when the study was not confirmed)."""
    if not info.confirm:
        return pd.DataFrame()
    plan = ConfirmPlan.from_json(info.confirm)
    table = confirm_scores(results, plan, info.metric, info.mode)
    hours, device = trial_hours(results)
    fresh = hours[[e == CONFIRM for e, _ in hours.index]]
    table["device_hours"] = float(fresh.sum()) / max(len(plan.selected), 1)
    metric = score_name(info.metric)

    def display(style: str) -> pd.DataFrame:
        rows = []
        for row in table.itertuples():
            interval = (f"[{number(row.fresh_low)}, {number(row.fresh_high)}]"
                        if row.fresh_seeds > 1 else "–")
            rows.append({"#": str(row.rank), "selected trials": row.selected_trials,
                         "epoch": str(row.epoch), f"selected {metric}": number(row.selected),
                         f"fresh mean {metric}": number(row.fresh_mean),
                         "95% interval": interval, "fresh seeds": str(row.fresh_seeds),
                         "did not hold": number(row.held_back, signed=True),
                         f"{device}-h": f"{row.device_hours:.3g}"})
        return display_frame(rows, style)

    seeds = ", ".join(str(s) for s in plan.seeds)
    writer.table(CONFIRM, f"The best {len(plan.selected)} configuration(s) on fresh seeds",
                 table, display, [
                     f"Selected: the mean dev {metric} of the configuration's seeds in the "
                     "search, at the epoch where that mean is best: it was chosen because it was "
                     "high, so it is biased upwards (the winner's curse). Fresh: the same "
                     f"configuration trained again on seeds {seeds}, none of which the search "
                     "used, read at that same epoch (nothing is chosen on them): the score to "
                     "report. Did not hold: selected minus fresh (for a metric to minimise, "
                     "fresh minus selected). A selected score outside the fresh interval "
                     "overstated (or understated) the configuration by more than its seeds "
                     "vary; with fewer than 5 fresh seeds the interval is wide.",
                     f"{device}-h: the fresh seeds' wall time times the {device}s they held, "
                     "per configuration."])
    return table
