"""Search figures (collect, then draw): the metric against each searched parameter, Optuna's
parameter importances and the optimization history."""

from __future__ import annotations

import textwrap
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from mtl_tune.names import score_name
from mtl_tune.reports._figures import new_figure


def collect_param_effects(best: pd.DataFrame, params: Sequence[str], metric: str) -> pd.DataFrame:
    """Long form: trial_id, param, value, score (the trial's best dev `metric`)."""
    rows = [
        {"trial_id": row["trial_id"], "param": param, "value": row.get(f"config/{param}"),
         "score": row[metric]}
        for row in best.to_dict("records")
        for param in params
    ]
    frame = pd.DataFrame(rows, columns=["trial_id", "param", "value", "score"])
    return frame.dropna(subset=["value"]).reset_index(drop=True)


def _numeric(values: pd.Series) -> pd.Series | None:
    if values.map(lambda v: isinstance(v, bool | str)).any():
        return None
    numbers = pd.to_numeric(values, errors="coerce")
    return None if numbers.isna().any() else numbers.astype(float)


def draw_param_effects(
    data: pd.DataFrame, metric: str, log_params: Collection[str] = ()
) -> Figure:
    """One panel per parameter: each trial's best dev metric at its value.

    A numeric axis is logarithmic for the parameters in `log_params` (sampled log-uniformly) and
    for positive values spanning a factor of 10 or more.
    """
    import seaborn as sns

    params = list(dict.fromkeys(data["param"])) or ["(no searched parameter)"]
    figure, axes = new_figure(len(params))
    for ax, param in zip(axes, params, strict=True):
        mine = data[data["param"] == param]
        numbers = _numeric(mine["value"]) if not mine.empty else None
        if numbers is not None:
            sns.scatterplot(x=numbers.to_numpy(), y=mine["score"].to_numpy(), ax=ax, s=40)
            positive = numbers[numbers > 0]
            if len(positive) == len(numbers) and (
                param in log_params or positive.max() / positive.min() >= 10
            ):
                ax.set_xscale("log")
                # labels at 1, 2, 3, 5, 7 x 10^k in plain short numbers, none on minor ticks
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0, 7.0)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.2g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.tick_params(axis="x", labelrotation=45)
            else:
                ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        elif not mine.empty:
            sns.stripplot(x=mine["value"].astype(str).to_numpy(), y=mine["score"].to_numpy(),
                          ax=ax, size=6, jitter=0.1)
            ax.tick_params(axis="x", labelrotation=45)
        ax.set_xlabel(param)
        ax.set_ylabel(f"best dev {score_name(metric)}" if ax is axes[0] else "")
    # wrapped to the figure's width: one panel is narrower than the title
    title = f"Best dev {score_name(metric)} of each trial against each searched parameter"
    figure.suptitle(textwrap.fill(title, max(24, int(figure.get_figwidth() * 10))))
    return figure


def draw_importances(importances: pd.DataFrame) -> Figure:
    """Horizontal bars of Optuna's parameter importances."""
    import seaborn as sns

    figure, axes = new_figure(1, width=5.0, height=0.5 + 0.45 * max(len(importances), 2))
    if importances.empty:
        axes[0].text(0.5, 0.5, "no importances", ha="center", va="center")
    else:
        sns.barplot(data=importances, x="importance", y="param", hue="param", legend=False,
                    ax=axes[0])
    axes[0].set_xlabel("importance (fANOVA)")
    axes[0].set_ylabel("")
    figure.suptitle("Parameter importances")
    return figure


def collect_history(values: Sequence[float], mode: str) -> pd.DataFrame:
    """number, value, best (the best value so far) for values in the order they were found."""
    data = np.asarray(values, dtype=float)
    best = np.maximum.accumulate(data) if mode == "max" else np.minimum.accumulate(data)
    return pd.DataFrame({"number": np.arange(len(data)), "value": data, "best": best})


def draw_history(data: pd.DataFrame, metric: str) -> Figure:
    """Each trial's value by trial number and the best so far."""
    import seaborn as sns

    figure, axes = new_figure(1, width=5.5)
    ax = axes[0]
    sns.scatterplot(data=data, x="number", y="value", ax=ax, label="trial", s=36)
    ax.step(data["number"], data["best"], where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial number")
    ax.set_ylabel(score_name(metric))
    ax.legend(loc="best")
    figure.suptitle("Optimization history")
    return figure
