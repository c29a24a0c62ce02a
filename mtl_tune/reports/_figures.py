"""Ablation figures, each as a pair: `collect_*` builds the data, `draw_*` draws it.

Figures are drawn on `matplotlib.figure.Figure` objects (Agg canvas), never through pyplot, so
a report leaves no global figure state and works without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mtl_tune.names import SCORE_NAMES
from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.reports._stats import BOOTSTRAP_FROM
from mtl_tune.studies import COUNTED

TASK_LABELS = SCORE_NAMES
CURVE_METRICS = ("sst_acc", "para_acc", "sts_corr", "overall")


def new_figure(panels: int, width: float = 3.2, height: float = 3.4) -> tuple[Figure, list]:
    """A figure of `panels` axes side by side, in seaborn's whitegrid style."""
    import seaborn as sns

    with sns.axes_style("whitegrid"):
        figure = Figure(figsize=(width * panels, height), layout="constrained")
        axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


class ScoreBars(NamedTuple):
    summary: pd.DataFrame  # iteration, metric, mean, ci_low, ci_high (one row per bar)
    points: pd.DataFrame  # iteration, metric, trial_id, value (one point per trial)


def collect_score_bars(dev: pd.DataFrame, best: pd.DataFrame) -> ScoreBars:
    """Bars (the dev table's means and CIs) and points (each trial at its best epoch)."""
    order = list(dev["iteration"])
    summary = pd.DataFrame(
        [
            {
                "iteration": row["iteration"],
                "metric": TASK_LABELS[key],
                "mean": row[key],
                "ci_low": row[f"{key}_ci_low"],
                "ci_high": row[f"{key}_ci_high"],
            }
            for row in dev.to_dict("records")
            for key in METRIC_KEYS
        ]
    )
    mine = best[best["trainable"].isin(order)]
    points = mine.melt(
        id_vars=["trainable", "trial_id"], value_vars=list(METRIC_KEYS), var_name="metric"
    ).rename(columns={"trainable": "iteration"})
    points["metric"] = points["metric"].map(TASK_LABELS)
    return ScoreBars(summary, points[["iteration", "metric", "trial_id", "value"]])


def draw_score_bars(data: ScoreBars) -> Figure:
    """One panel per metric: a bar per iteration (mean over seeds), its 95% CI, the seeds."""
    import seaborn as sns

    metrics = list(dict.fromkeys(data.summary["metric"]))
    order = list(dict.fromkeys(data.summary["iteration"]))
    figure, axes = new_figure(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        bars = data.summary[data.summary["metric"] == metric]
        sns.barplot(data=bars, x="iteration", y="mean", order=order, hue="iteration",
                    hue_order=order, legend=False, errorbar=None, alpha=0.8, ax=ax)
        has_ci = bars["ci_low"].notna().to_numpy()
        positions = np.arange(len(order))[has_ci]
        if has_ci.any():
            mean, low, high = (bars[c].to_numpy(dtype=float)[has_ci]
                               for c in ("mean", "ci_low", "ci_high"))
            ax.errorbar(positions, mean, yerr=[mean - low, high - mean], fmt="none",
                        ecolor="black", capsize=4, linewidth=1.2)
        seeds = data.points[data.points["metric"] == metric]
        if not seeds.empty:
            sns.stripplot(data=seeds, x="iteration", y="value", order=order, color="black",
                          size=4, jitter=0.15, ax=ax)
        ax.set_title(metric)
        ax.set_xlabel("")
        ax.set_ylabel("dev score" if ax is axes[0] else "")
        ax.tick_params(axis="x", labelrotation=60)
    figure.suptitle("Dev scores by iteration (bars: mean over seeds with 95% CI, t below "
                    f"{BOOTSTRAP_FROM} seeds, else BCa bootstrap; dots: seeds)")
    return figure


def collect_learning_curves(results: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Long form: iteration, trial_id, epoch, metric, value, for every counted trial's epochs."""
    rows = results[results["status"].isin(COUNTED) & results["epoch"].notna()]
    rows = rows[rows["trainable"].isin(order)]
    long = rows.melt(
        id_vars=["trainable", "trial_id", "epoch"], value_vars=list(CURVE_METRICS),
        var_name="metric",
    ).rename(columns={"trainable": "iteration"})
    long["epoch"] = long["epoch"].astype(int)
    long["metric"] = long["metric"].map(TASK_LABELS)
    return long.dropna(subset=["value"]).reset_index(drop=True)


DODGE = 0.05  # epochs between neighbouring iterations' points in the learning curves


def draw_learning_curves(data: pd.DataFrame, order: Sequence[str]) -> Figure:
    """One panel per metric: the dev score by epoch, a line per iteration (band: ± sd)."""
    import seaborn as sns

    metrics = [TASK_LABELS[k] for k in CURVE_METRICS]
    hue_order = [name for name in order if name in set(data["iteration"])]
    # iterations with equal scores would draw one line over another: each is shifted a little
    # along x (dodged) and has its own marker and dash
    shift = {name: (i - (len(hue_order) - 1) / 2) * DODGE for i, name in enumerate(hue_order)}
    data = data.assign(x=data["epoch"] + data["iteration"].map(shift).fillna(0.0))
    figure, axes = new_figure(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        sns.lineplot(data=data[data["metric"] == metric], x="x", y="value", hue="iteration",
                     hue_order=hue_order, style="iteration", style_order=hue_order,
                     markers=True, dashes=True, errorbar="sd", ax=ax, legend=ax is axes[-1])
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.set_ylabel("dev score" if ax is axes[0] else "")
        epochs = sorted(set(data["epoch"]))
        if epochs:
            ax.set_xticks(epochs)
    legend = axes[-1].get_legend()
    if legend is not None:
        legend.set_loc("center left")
        legend.set_bbox_to_anchor((1.02, 0.5))
    figure.suptitle("Dev learning curves (mean over seeds, band: ± sd)")
    return figure
