"""A study launched and killed by mtl-tune as it was before `studies/` became layers (commit
a8f634d: one flat package, and the trial report before it was typed; its package is archived in
`tests/fixtures/before-layers`, so that a shallow clone runs this too), resumed and reported by
today's code: Tune's `tuner.pkl` names the old module paths of the driver's callbacks, searcher
and stopper (`studies/_moved_modules.py` maps them), and the killed trial goes on from the
checkpoint the old code wrote."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.studies.results._results import read_result_rows
from mtl_tune.studies.store import read_meta
from tests.helpers import write_tiny_data
from tests.studies.conftest import (
    NO_SCHEDULER,
    TPE_SPACE,
    BetweenTwoTrials,
    launch_and_kill,
    resume_cli,
    tiny_fixed,
    write_spec,
)

BEFORE_LAYERS = "a8f634d"  # the last commit with the flat studies/ package
ARCHIVE = (Path(__file__).parents[1] / "fixtures" / "before-layers"
           / f"mtl_tune-{BEFORE_LAYERS}.tar.xz")
TOP = """
name = "old"
trainables = ["it7-cosrelu-tuned"]
search = "optuna"
num_samples = 2
max_concurrent = 1
optuna_seed = 1
"""


def _old_code(dest: Path) -> Path:
    """The package as of BEFORE_LAYERS (`git archive a8f634d mtl_tune | xz`), in `dest`."""
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _between(folder: Path) -> BetweenTwoTrials:
    """The moment to kill, judged on the files in the study folder."""

    def read(relative: str) -> str | None:
        path = folder / relative
        return path.read_text() if path.is_file() else None

    def listing() -> list[str]:
        return [p.relative_to(folder).as_posix() for p in folder.rglob("*")] if folder.is_dir() \
            else []

    return BetweenTwoTrials(read, listing)


@pytest.mark.chaos  # about a minute and a half
def test_a_study_killed_by_the_code_before_the_layers_resumes_and_reports(
    tmp_path: Path, tiny_bert_dir: Path, ray_tmp: Path
) -> None:
    old = _old_code(tmp_path / "old-code")
    data = write_tiny_data(tmp_path / "data", rows=700)  # an epoch takes over 2 s
    path = write_spec(tmp_path, TOP, tiny_fixed(tiny_bert_dir, data, epochs=2),
                      TPE_SPACE + NO_SCHEDULER)
    root = tmp_path / "studies"
    # the old package first on the path; PYTHONSAFEPATH: `python -c` would put the current
    # folder (this checkout) before it. Ray's workers get the driver's path.
    before = launch_and_kill(path, data, root, ray_tmp, _between(root / "old"),
                             env_extra={"PYTHONPATH": str(old), "PYTHONSAFEPATH": "1"})
    # the old code ran the driver: its pickle names the flat modules
    assert "mtl_tune.studies._callbacks" in (root / "old" / "tune" / "main" /
                                             "tuner.pkl").read_bytes().decode("latin-1")
    (finished,) = [t for t, event in before.items() if event == "finished"]
    (running,) = [t for t, event in before.items() if event == "running"]
    killed_dir = next((root / "old" / "tune" / "main").glob(f"*{running}*"))
    first_epoch = read_result_rows(killed_dir)[0]
    finished_rows = read_result_rows(next((root / "old" / "tune" / "main").glob(f"*{finished}*")))
    shutil.rmtree(old)  # today's code alone from here on

    resume_cli("old", root, ray_tmp, tmp_path / "resume.log")
    status = CliRunner().invoke(app, ["study", "status", "old", "--storage", str(root), "--json"])
    assert status.exit_code == 0, status.output
    trials = {t["trial_id"]: t for t in json.loads(status.stdout)["trials"]}
    # both trials finished with their two epochs
    assert {(t["state"], t["epochs"]) for t in trials.values()} == {("TERMINATED", 2)}
    assert set(trials) == {finished, running}
    # the killed trial went on from the old code's checkpoint: its first epoch was not run again
    assert read_result_rows(killed_dir)[0]["timestamp"] == first_epoch["timestamp"]
    # the finished one did not run again
    assert read_result_rows(next((root / "old" / "tune" / "main").glob(f"*{finished}*"))) \
        == finished_rows
    # the Optuna record holds each trial once, complete
    url = read_meta(root / "old").optuna_storage
    record = optuna.load_study(study_name="old", storage=url).trials
    assert sorted(t.user_attrs["ray_trial_id"] for t in record) == sorted(trials)
    assert {t.state for t in record} == {optuna.trial.TrialState.COMPLETE}
    report = CliRunner().invoke(app, ["report", "search", "old", "--storage", str(root),
                                      "--out", str(tmp_path / "report"), "--format", "md,csv"])
    assert report.exit_code == 0, report.output
    assert (tmp_path / "report" / "top.csv").read_text().count("\n") == 3  # header + 2 trials
