"""Where a row's spread over seeds comes from, for a study with crossed seeds (`seed_design =
"crossed"`: every `init_seed` with every `data_seed`).

A row's runs form an I x D table of dev scores x(i, d), each at its best epoch. Its sample
variance splits exactly into three parts (the two-way layout without replication):

    SS_total = SS_init + SS_data + SS_rest, with m the mean of all n = I*D runs,
    SS_init = D * sum_i (mean_i - m)^2, SS_data = I * sum_d (mean_d - m)^2,
    SS_rest = what neither seed's mean explains (their interaction, and noise neither seed
    drives: the order in which a run's gradients are combined, the device),

each divided by n - 1, so that the three variances add up to the row's variance over its runs.
Each part's share comes with a 95% percentile interval from a two-way bootstrap (the
initialisation seeds and the data seeds resampled with replacement, independently; 2,000
resamples, seeded), which is wide with 3 x 3 runs: read the shares as an order of magnitude.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mtl_tune.names import score_name
from mtl_tune.reports._display import display_frame, number
from mtl_tune.reports._writer import ReportWriter

PARTS = ("init", "data", "rest")


def sums_of_squares(grid: np.ndarray) -> dict[str, float]:
    """SS_total and its three parts of an I x D table of scores (I, D >= 2)."""
    mean = float(grid.mean())
    rows, columns = grid.shape
    init = columns * float(((grid.mean(axis=1) - mean) ** 2).sum())
    data = rows * float(((grid.mean(axis=0) - mean) ** 2).sum())
    total = float(((grid - mean) ** 2).sum())
    # (rounding can take the rest a hair below zero when the seeds explain it all)
    return {"total": total, "init": init, "data": data, "rest": max(total - init - data, 0.0)}


def _grid(runs: Mapping[tuple[int, int], float]) -> np.ndarray | None:
    """The I x D table of (init seed, data seed) -> score; None when some pair is missing or
    either seed has fewer than two values."""
    inits = sorted({i for i, _ in runs})
    datas = sorted({d for _, d in runs})
    if len(inits) < 2 or len(datas) < 2 or len(runs) != len(inits) * len(datas):
        return None
    return np.array([[runs[(i, d)] for d in datas] for i in inits], dtype=float)


def variance_split(runs: Mapping[tuple[int, int], float], n_resamples: int = 2000,
                   seed: int = 0) -> dict[str, Any] | None:
    """The row's variance over its runs, each part's variance and share with its interval;
    None when the runs are not a complete crossed table."""
    grid = _grid(runs)
    if grid is None:
        return None
    n = grid.size
    ss = sums_of_squares(grid)
    out: dict[str, Any] = {"n_init": grid.shape[0], "n_data": grid.shape[1], "runs": n,
                           "variance": ss["total"] / (n - 1)}
    rng = np.random.default_rng(seed)
    shares: dict[str, list[float]] = {part: [] for part in PARTS}
    for _ in range(n_resamples):
        rows = rng.integers(0, grid.shape[0], grid.shape[0])
        columns = rng.integers(0, grid.shape[1], grid.shape[1])
        sample = sums_of_squares(grid[np.ix_(rows, columns)])
        if sample["total"] > 0:
            for part in PARTS:
                shares[part].append(min(sample[part] / sample["total"], 1.0))
    for part in PARTS:
        out[f"{part}_variance"] = ss[part] / (n - 1)
        out[f"{part}_share"] = ss[part] / ss["total"] if ss["total"] > 0 else float("nan")
        low, high = (np.percentile(shares[part], [2.5, 97.5]) if shares[part]
                     else (float("nan"), float("nan")))
        out[f"{part}_share_low"], out[f"{part}_share_high"] = float(low), float(high)
    return out


def variance_table(best: pd.DataFrame, order: Sequence[str], metric: str,
                   n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per trainable in `order` whose trials (`best`: each at its best epoch) form a
    complete crossed table of `config/init_seed` x `config/data_seed`; empty when none does."""
    if not {"config/init_seed", "config/data_seed"} <= set(best.columns):
        return pd.DataFrame()
    rows = []
    for name in order:
        mine = best[(best["trainable"] == name) & best["config/init_seed"].notna()
                    & best["config/data_seed"].notna()]
        runs = {(int(i), int(d)): float(v) for i, d, v in
                zip(mine["config/init_seed"], mine["config/data_seed"], mine[metric],
                    strict=True)}
        split = variance_split(runs, n_resamples, seed)
        if split is not None:
            rows.append({"iteration": name, **split})
    return pd.DataFrame(rows)


def add_variance(writer: ReportWriter, best: pd.DataFrame, order: Sequence[str], metric: str,
                 n_resamples: int, seed: int) -> pd.DataFrame:
    """Adds the variance table of a study with crossed seeds (see `variance_table`); returns
    it (empty, and nothing added, for a study without)."""
    table = variance_table(best, order, metric, n_resamples, seed)
    if table.empty:
        return table

    def share(row: Any, part: str) -> str:
        return (f"{100 * getattr(row, f'{part}_share'):.0f}% "
                f"[{100 * getattr(row, f'{part}_share_low'):.0f}, "
                f"{100 * getattr(row, f'{part}_share_high'):.0f}]")

    def display(style: str) -> pd.DataFrame:
        return display_frame([
            {"Iteration": row.iteration, "Runs": f"{row.n_init} x {row.n_data}",
             "SD": number(np.sqrt(row.variance)), "Initialisation": share(row, "init"),
             "Data order": share(row, "data"), "Rest": share(row, "rest")}
            for row in table.itertuples()], style)

    name = score_name(metric)
    writer.table("variance", f"Where the spread over seeds comes from (dev {name})", table,
                 display, [
                     f"Each row's runs, every initialisation seed (the heads' initialisation and "
                     "dropout) with every data seed (the task schedule and batch order), each "
                     f"at its best epoch by dev {name}. SD: over all its runs. Each share is the "
                     "part of their variance that the initialisation seed's means, the data "
                     "seed's means, and neither (their interaction and the rest) account for; "
                     "the three add up to 100%. In brackets: a 95% interval from resampling "
                     f"both seeds ({n_resamples} resamples), wide with few seeds: a share "
                     "whose interval reaches 0 may be nothing at all."])
    return table
