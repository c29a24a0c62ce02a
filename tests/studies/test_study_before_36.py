"""A study written by the trainable as it was before the typed trial report (issue 36): its
folder, less the weights and Ray's pickles (`tests/fixtures/before-36/before36`), and what
`study status --json` and `report search` made of it then (`expected/`). Today's code must read
it with the same values: the keys in `result.json` are the contract with every study on disk."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from mtl_tune.cli import app

FIXTURE = Path(__file__).parents[1] / "fixtures" / "before-36"


def test_a_study_from_before_the_typed_report_reads_the_same(tmp_path: Path) -> None:
    root = tmp_path / "studies"
    shutil.copytree(FIXTURE / "before36", root / "before36")
    status = CliRunner().invoke(app, ["study", "status", "before36", "--storage", str(root),
                                      "--json"])
    assert status.exit_code == 0, status.output
    record = json.loads(status.stdout)
    assert record.pop("storage") == str(root)
    # every trial, its state, epochs and best dev scores as they were read then
    assert record == json.loads((FIXTURE / "expected" / "status.json").read_text())
    out = tmp_path / "report"
    report = CliRunner().invoke(app, ["report", "search", "before36", "--storage", str(root),
                                      "--out", str(out), "--format", "csv"])
    assert report.exit_code == 0, report.output
    # the report's tables: every epoch's results, the top configurations (which since gained
    # each trial's device-hours), the importances
    expected = (FIXTURE / "expected" / "results.csv").read_text().replace("{root}", str(root))
    written = pd.read_csv(out / "results.csv")
    # since gained: whether each trial diverged (its data folder is gone: judged on its STS r
    # alone, at or below 0.1 at its last epoch)
    last = written.sort_values("epoch").groupby("trial_id").tail(1).set_index("trial_id")
    diverged = written.groupby("trial_id")["diverged"].first()
    assert diverged.to_dict() == (last["sts_corr"] <= 0.1).to_dict()
    assert written.drop(columns="diverged").to_csv(index=False) == pd.read_csv(
        io.StringIO(expected)).to_csv(index=False)
    top = pd.read_csv(out / "top.csv")
    expected_top = pd.read_csv(FIXTURE / "expected" / "top.csv")
    expected_top["checkpoint"] = expected_top["checkpoint"].str.replace("{root}", str(root))
    pd.testing.assert_frame_equal(top[list(expected_top)], expected_top)
    assert list(top.columns[len(expected_top.columns):]) == ["device_hours", "device"]
    assert (top["device_hours"] > 0).all() and set(top["device"]) == {"CPU"}
    # the importances since gained the trials each is computed over (here every trial: none of
    # them is conditional)
    importances = pd.read_csv(out / "importances.csv")
    expected = pd.read_csv(FIXTURE / "expected" / "importances.csv")
    pd.testing.assert_frame_equal(importances[list(expected)], expected)
    assert importances["trials"].tolist() == [2] * len(expected)
