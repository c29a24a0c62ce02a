"""Every table says the compute behind its rows (issue 43): the seed groups', the test
table's and the one beside the paper, as the dev table counts it (`trial_hours`)."""

from __future__ import annotations

import pandas as pd
import pytest

from mtl_tune.reports._display import heldout_display, hours_text, published_display
from mtl_tune.reports._published import published_table
from mtl_tune.reports._seed_groups import group_display, group_table


def _trial(group: str, trial: str, seed: int, seconds: float, cpus: float) -> list[dict]:
    return [{"experiment": "main", "trial_id": trial, "config/seed_group": group, "seed": seed,
             "status": "TERMINATED", "epoch": epoch, "training_iteration": epoch,
             "trial_seconds": seconds, "gpus_per_trial": 0.0, "cpus_per_trial": cpus,
             "config/lr": 1e-4 if group == "g1" else 2e-4, "sst_acc": 0.4, "para_acc": 0.7,
             "sts_corr": 0.5, "overall": 0.5 + 0.01 * epoch + (0.05 if group == "g1" else 0),
             "mean_score": 0.5} for epoch in (1, 2)]


def test_a_seed_group_counts_its_seeds_device_hours() -> None:
    results = pd.DataFrame(_trial("g1", "a", 0, 3600.0, 0.5) + _trial("g1", "b", 1, 1800.0, 0.5)
                           + _trial("g2", "c", 0, 7200.0, 1.0) + _trial("g2", "d", 1, 0.0, 1.0))
    groups = group_table(results, [], ["lr"], "overall", "max")
    assert groups.set_index("group")["device_hours"].to_dict() == {
        "g1": pytest.approx(0.5 + 0.25), "g2": pytest.approx(2.0)}
    assert set(groups["device"]) == {"CPU"}
    shown = group_display(groups, ["lr"], "overall", "md")
    assert list(shown["CPU-h"]) == ["0.75", "2"]
    # a group with a diverged seed says so beside its seeds
    results["diverged"] = results["trial_id"] == "d"
    shown = group_display(group_table(results, [], ["lr"], "overall", "max"), ["lr"], "overall",
                          "md")
    assert list(shown["Seeds"]) == ["2", "2 §1"]


def test_the_test_and_published_tables_carry_the_dev_rows_hours() -> None:
    dev = pd.DataFrame([{"iteration": name, "mean_score": 0.5 + 0.01 * i, "device_hours": h,
                         "device": "GPU"}
                        for i, (name, h) in enumerate([("it1-baseline", 1.5),
                                                       ("it2-dropout", 2.25)])])
    published = published_table(dev)
    assert published is not None
    assert list(published["device_hours"]) == [1.5, 2.25]
    assert list(published_display(published, "md")["GPU-h ours"]) == [hours_text(1.5),
                                                                      hours_text(2.25)]
    test = pd.DataFrame([{"iteration": "it1-baseline", "trial_id": "a", "epoch": 2,
                          "sst_acc": 0.4, "para_acc": 0.7, "sts_corr": 0.5, "overall": 0.6,
                          "mean_score": 0.5, "delta_prev": float("nan"),
                          "delta_base": 0.0, "note": "", "device_hours": 1.5,
                          "device": "GPU"}])
    assert list(heldout_display(test, "md")["GPU-h"]) == ["1.5"]
