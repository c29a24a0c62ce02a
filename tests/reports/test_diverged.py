"""Diverged runs (`studies/results/_diverged.py`): a trial whose dev scores end at a model that
learned nothing is flagged in the reports, and left out of means only when asked."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from mtl_tune.reports import report_ablation
from mtl_tune.studies import launch_study, load_results, mark_diverged, trivial_baselines
from mtl_tune.studies.spec import load_spec
from tests.studies.conftest import NO_SCHEDULER, write_spec


def _majority(path: Path, column: str) -> float:
    with path.open(encoding="utf-8") as handle:
        labels = [row[column] for row in csv.DictReader(handle, delimiter="\t") if row[column]]
    return Counter(labels).most_common(1)[0][1] / len(labels)


def test_the_baselines_are_the_dev_splits_majority_shares(tiny_data_dir: Path) -> None:
    baselines = trivial_baselines(tiny_data_dir)
    assert baselines == {
        "sst_acc": pytest.approx(_majority(tiny_data_dir / "ids-sst-dev.csv", "sentiment")),
        "para_acc": pytest.approx(_majority(tiny_data_dir / "quora-dev.csv", "is_duplicate")),
        "sts_corr": 0.1,
    }
    # without data, only the correlation's floor is known
    assert trivial_baselines(None) == {"sts_corr": 0.1}


def test_a_trial_is_judged_on_its_last_epoch() -> None:
    rows = [("a", 1, 0.40, 0.5), ("a", 2, 0.20, 0.5),  # fell to the majority share: diverged
            ("b", 1, 0.20, 0.5), ("b", 2, 0.40, 0.5),  # recovered: not
            ("c", 1, 0.40, 0.1),                       # STS r at the floor: diverged
            ("d", 1, 0.40, float("nan"))]              # nothing known of STS: not
    frame = pd.DataFrame([{"experiment": "main", "trial_id": t, "epoch": e, "sst_acc": s,
                           "sts_corr": r} for t, e, s, r in rows])
    marked = mark_diverged(frame, {"sst_acc": 0.25, "sts_corr": 0.1})
    assert marked.groupby("trial_id")["diverged"].all().to_dict() == {
        "a": True, "b": False, "c": True, "d": False}
    assert "diverged" not in frame  # the frame given is left as it was


def test_an_injected_diverged_run_is_flagged_and_dropped_only_when_asked(
    tmp_path: Path, tiny_data_dir: Path, ray_local: None
) -> None:
    top = ('name = "div"\ntrainables = ["it1-baseline"]\nsearch = "grid"\nseeds = 3\n'
           "max_concurrent = 2")
    path = write_spec(tmp_path, top, {"epochs": 2, "data_dir": str(tiny_data_dir)},
                      NO_SCHEDULER)
    outcome = launch_study(load_spec(str(path)), tmp_path / "studies", path.read_text(),
                           verbose=0, simulate=True)
    results = load_results(outcome.folder)
    assert not mark_diverged(results, trivial_baselines(tiny_data_dir))["diverged"].any()
    # seed 2's run collapses at its last epoch: its STS r falls to 0.05
    victim = results[results["seed"] == 2].iloc[0]
    log = Path(victim["trial_path"]) / "result.json"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    lines[-1]["sts_corr"] = 0.05
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))

    kept = report_ablation(outcome.folder, out=tmp_path / "kept", formats=("md", "csv"))
    row = kept.tables["dev"].iloc[0]
    assert (row["n"], row["diverged"]) == (3, 1)
    text = (tmp_path / "kept" / "report.md").read_text()
    assert "3 done §1" in text
    assert f"1 trial(s) diverged ({victim['trial_id']}; flagged in the tables" in text

    dropped = report_ablation(outcome.folder, out=tmp_path / "dropped", formats=("md",),
                              drop_diverged=True)
    row = dropped.tables["dev"].iloc[0]
    assert (row["n"], row["diverged"]) == (2, 0)
    assert "1 diverged trial(s) were left out of every table and mean (--drop-diverged)" in (
        tmp_path / "dropped" / "report.md").read_text()
