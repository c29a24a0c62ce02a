"""How many seeds each change of an ablation needs, and the launch that runs them.

From the dev table's power column: a row whose change against the previous row needs more
seeds (at 80% power) than it ran, or that ran fewer than 3 seeds, is not settled; the advice is
one launch of the study's spec with the most seeds any finite row needs (3 at least), so every
row is compared over the same seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mtl_tune.reports._dev_table import dev_table
from mtl_tune.reports._display import number, seeds_text
from mtl_tune.reports._selection import row_order
from mtl_tune.reports._stats import FEW_SEEDS
from mtl_tune.reports._terminal import PIPE_WIDTH, fit_table
from mtl_tune.studies import open_study, seeds_launch_command, study_results


@dataclass(frozen=True)
class SeedsAdvice:
    rows: pd.DataFrame  # iteration, delta_prev, seeds (run), seeds_needed, settled
    seeds: int | None  # seeds per row to run; None when every change is settled (or cannot be)
    command: str | None  # the `mtl-tune study launch` line that runs them


def seeds_advice(study_folder: Path | str) -> SeedsAdvice:
    """The seeds each row needs to settle its change from the previous row, and the launch."""
    from mtl_tune.platform.presets import PRESETS

    info = open_study(study_folder)
    results = study_results(info)
    order = row_order([*info.trainables, *results["trainable"]], list(PRESETS))
    dev = dev_table(results, order, info.metric, info.mode)
    rows = dev[["iteration", "delta_prev", "n", "seeds_needed"]].rename(columns={"n": "seeds"})
    needed = rows["seeds_needed"].astype(float)
    # a spread seen on fewer than FEW_SEEDS seeds settles nothing, whatever it suggests
    enough = rows["seeds"] >= FEW_SEEDS
    rows = rows.assign(settled=enough & ((needed <= rows["seeds"]) | needed.isna()))
    open_rows = needed[~rows["settled"] & needed.map(math.isfinite)]
    if open_rows.empty and enough.all():
        return SeedsAdvice(rows, None, None)
    seeds = int(max(FEW_SEEDS, open_rows.max() if not open_rows.empty else FEW_SEEDS))
    return SeedsAdvice(rows, seeds, seeds_launch_command(info.folder, seeds))


def advice_text(advice: SeedsAdvice, width: int = PIPE_WIDTH) -> str:
    """The advice as `report ablation --seeds-advice` prints it: a table, then the launch."""
    frame = pd.DataFrame({
        "Iteration": advice.rows["iteration"],
        "Δ prev": [number(v, signed=True) for v in advice.rows["delta_prev"]],
        "Seeds run": advice.rows["seeds"],
        "Seeds needed (80% power)": [seeds_text(v) for v in advice.rows["seeds_needed"]],
        "Settled": ["yes" if v else "no" for v in advice.rows["settled"]],
    })
    lines, _ = fit_table(frame, width)
    if advice.command is None:
        lines.append("Every change is settled with the seeds run (or cannot be: Δ prev = 0); "
                     "no launch needed.")
    else:
        lines.append(f"To settle every change, run each row over {advice.seeds} seeds:")
        lines.append(f"  {advice.command}")
    return "\n".join(lines)
