"""The Pareto front of a synthetic multi-objective study equals the known set."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtl_tune.reports._pareto import draw_pareto, non_dominated, pareto_front


def test_front_of_a_known_set() -> None:
    # (sst, sts): a, b, c trade off; d is beaten by b on both; e ties b on sst and loses on sts;
    # f equals c exactly (two equal points dominate neither other)
    points = np.array([[0.50, 0.70], [0.45, 0.80], [0.40, 0.85], [0.44, 0.79], [0.45, 0.60],
                       [0.40, 0.85]])
    assert non_dominated(points, ["max", "max"]).tolist() == [True, True, True, False, False,
                                                              True]
    # minimising the second objective turns the front around: a (0.50 first, 0.70 second) and
    # e (0.45, 0.60) remain, everything else is beaten by one of them
    assert non_dominated(points, ["max", "min"]).tolist() == [True, False, False, False, True,
                                                              False]


def test_pareto_front_of_trials_and_its_figure() -> None:
    rng = np.random.default_rng(0)
    best = pd.DataFrame({
        "trial_id": [f"t{i}" for i in range(12)],
        "sst_acc": rng.uniform(0.2, 0.5, 12),
        "para_acc": rng.uniform(0.5, 0.8, 12),
        "sts_corr": rng.uniform(0.0, 0.9, 12),
    })
    best.loc[11, "sts_corr"] = np.nan  # a trial without an STS score is left out
    objectives = [("sst_acc", "max"), ("para_acc", "max"), ("sts_corr", "max")]
    points = pareto_front(best, objectives)
    assert len(points) == 11
    values = points[["sst_acc", "para_acc", "sts_corr"]].to_numpy()
    # brute force: a point is on the front when no other is >= everywhere and > somewhere
    expected = [not any((other >= point).all() and (other > point).any() for other in values)
                for point in values]
    assert points["on_front"].tolist() == expected and 0 < sum(expected) < 11
    figure = draw_pareto(points, objectives)
    # one panel per pair of objectives, each with every point
    assert len(figure.axes) == 3
    for ax in figure.axes:
        assert sum(len(c.get_offsets()) for c in ax.collections) == 11
