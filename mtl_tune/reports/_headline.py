"""The ablation report's first lines: which iteration won, by how much, and the step that
mattered most, each with its interval or p-value, read off the dev table."""

from __future__ import annotations

import math

import pandas as pd

from mtl_tune.names import score_name
from mtl_tune.reports._display import WIDE
from mtl_tune.reports._paired import MARKS
from mtl_tune.reports._stats import FEW_SEEDS

LEVEL = MARKS[-1][0]  # 0.05: a step is significant below it


def _interval(row: pd.Series, metric: str) -> str:
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f" [{low:.3f}, {high:.3f}]"


def _seeds(n: int) -> str:
    few = f" ({WIDE} fewer than {FEW_SEEDS}: a wide interval)" if 1 < n < FEW_SEEDS else ""
    return f"over {n} seed{'' if n == 1 else 's'}{few}"


def headline(dev: pd.DataFrame, metric: str, mode: str) -> list[str]:
    """The best row with its mean dev `metric` and 95% interval; the largest change between
    consecutive rows that is significant (p (Holm) < 0.05), or the largest one if none is."""
    rows = dev[dev["n"] > 0]
    if rows.empty:
        return []
    scores = rows[metric].astype(float)
    best = rows.loc[scores.idxmax() if mode == "max" else scores.idxmin()]
    lines = [f"{best['iteration']} is best: dev {score_name(metric)} {best[metric]:.3f}"
             f"{_interval(best, metric)} {_seeds(int(best['n']))}."]
    if "p_holm" not in dev or len(dev) < 2:
        return lines
    steps = dev.assign(previous=dev["iteration"].shift(1)).iloc[1:]
    steps = steps[steps["delta_prev"].notna()]
    if steps.empty:
        return lines
    significant = steps[steps["p_holm"] < LEVEL]
    pool = significant if not significant.empty else steps
    step = pool.loc[pool["delta_prev"].abs().idxmax()]
    text = (f"{step['delta_prev']:+.3f} from {step['previous']} to {step['iteration']}, "
            f"p (Holm) {step['p_holm']:.3f}")
    if significant.empty:
        lines.append(f"No step between consecutive rows is significant at p (Holm) < "
                     f"{LEVEL}; the largest: {text}.")
    else:
        lines.append(f"Largest significant step: {text}.")
    return lines
