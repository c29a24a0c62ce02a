"""The family tree of a population-based study: one row per member, its run drawn epoch by
epoch as a segment coloured by a hyperparameter's value (lr by default, on a log scale), and an
arrow at each exploit from the donor's row to the member's, where the member continues from the
donor's checkpoint. Drawn on a `Figure`, never through pyplot."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from mtl_tune.names import score_name
from mtl_tune.reports._figures import new_figure


@dataclass(frozen=True)
class TreeRun:
    """A member's run (its first seed's trial): per epoch, the drawn key's value and the score;
    the exploits it took as (point, donor trial)."""

    trial: str
    member: str
    values: Mapping[int, Any]
    scores: Mapping[int, Any]
    continued: Sequence[tuple[int, str]]


def _norm(values: Sequence[float]) -> Normalize | None:
    if not values:
        return None
    low, high = min(values), max(values)
    if low > 0 and high / low >= 10:
        return LogNorm(low, high)
    return Normalize(low, high if high > low else low + 1.0)


def draw_family_tree(runs: Sequence[TreeRun], key: str, metric: str) -> Figure:
    """The tree; each segment (epoch e-1 to e) is labelled with nothing but coloured by `key`,
    each run's last epoch carries its score."""
    import matplotlib as mpl

    rows = {run.trial: i for i, run in enumerate(sorted(runs, key=lambda r: r.member))}
    numbers = [float(v) for run in runs for v in run.values.values()
               if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
    norm = _norm(numbers)
    cmap = mpl.colormaps["viridis"]
    last_epoch = max((e for run in runs for e in run.values), default=1)
    figure, (ax,) = new_figure(1, width=max(5.0, 1.1 * last_epoch + 2.5),
                               height=max(2.6, 0.45 * len(runs) + 1.2))
    for run in runs:
        y = rows[run.trial]
        for epoch, value in sorted(run.values.items()):
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            color = cmap(norm(float(value))) if numeric and norm is not None else "0.5"
            ax.plot([epoch - 1, epoch], [y, y], color=color, linewidth=6,
                    solid_capstyle="butt")
        if run.scores:
            last = max(run.scores)
            score = run.scores[last]
            if isinstance(score, int | float):
                ax.annotate(f"{float(score):.3f}", (last, y), xytext=(4, 0),
                            textcoords="offset points", va="center", fontsize=8)
        for point, donor in run.continued:
            if donor not in rows:
                continue
            ax.annotate("", xy=(point, y), xytext=(point, rows[donor]),
                        arrowprops={"arrowstyle": "->", "color": "crimson", "lw": 1.2,
                                    "shrinkA": 2, "shrinkB": 4})
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([run.member for run in sorted(runs, key=lambda r: r.member)],
                       fontsize=8)
    ax.set_xlim(0, last_epoch + 0.9)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xticks(range(0, last_epoch + 1))
    ax.set_xlabel("epoch")
    ax.set_ylabel("member")
    ax.set_title(f"Family tree (last dev {score_name(metric)} at the right)", fontsize=10)
    ax.grid(False)
    if norm is not None:
        mappable = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
        figure.colorbar(mappable, ax=ax, label=key)
    return figure
