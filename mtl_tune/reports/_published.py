"""The paper's published dev scores, shown beside a study's rows of the same iterations.

Source: the paper's ablation table (bert-base-uncased, full data; `../shared/DESIGN.md`). Its
"Overall" is the plain mean of the three scores, our `mean_score`. These numbers are printed
next to ours and labelled "published"; they never enter our statistics.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

# iteration -> (SST acc, PD acc, STS r, paper "Overall" = mean_score), dev split
PUBLISHED_DEV = {
    "it1-baseline": (0.391, 0.380, -0.009, 0.254),
    "it2-dropout": (0.530, 0.410, -0.043, 0.299),
    "it3-cosine-sts": (0.525, 0.403, 0.293, 0.407),
    "it4-round-robin": (0.441, 0.783, 0.377, 0.534),
    "it5-pcgrad": (0.455, 0.779, 0.421, 0.552),
    "it6-balanced": (0.490, 0.774, 0.668, 0.644),
    "it7-cosrelu-tuned": (0.493, 0.776, 0.692, 0.654),
}
SOURCE = "the paper's dev table (bert-base-uncased, full training data)"


def _sign(value: float) -> int:
    return 0 if value == 0 else int(math.copysign(1, value))


def published_table(dev: pd.DataFrame) -> pd.DataFrame | None:
    """Ours beside the paper's, for the dev rows that are paper iterations (None under two).

    Returns:
        One row per such iteration, in the dev table's order: `iteration`; the published
        `sst_acc`, `para_acc`, `sts_corr`, `mean_score`; `ours_mean_score` (our mean over
        seeds); `published_delta` and `ours_delta` (mean_score minus the previous such row's);
        `same_sign` (whether the two deltas agree in sign; NA on the first row or without ours);
        `device_hours` and `device`: what our row's trials used (the dev table's).
    """
    rows = dev[dev["iteration"].isin(list(PUBLISHED_DEV))]
    if len(rows) < 2:
        return None
    out: list[dict[str, Any]] = []
    for row in rows.itertuples(index=False):
        sst, para, sts, mean = PUBLISHED_DEV[str(row.iteration)]
        out.append({"iteration": row.iteration, "sst_acc": sst, "para_acc": para,
                    "sts_corr": sts, "mean_score": mean,
                    "ours_mean_score": float(row.mean_score),
                    **({"device_hours": row.device_hours, "device": row.device}
                       if hasattr(row, "device_hours") else {})})
    table = pd.DataFrame(out)
    table["published_delta"] = table["mean_score"].diff()
    table["ours_delta"] = table["ours_mean_score"].diff()
    table["same_sign"] = [
        pd.NA if math.isnan(p) or math.isnan(o) else _sign(p) == _sign(o)
        for p, o in zip(table["published_delta"], table["ours_delta"], strict=True)
    ]
    return table
