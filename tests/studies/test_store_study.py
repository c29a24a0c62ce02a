"""A study whose only storage is an object store (S3 on loopback, moto's server): launched from
the CLI, its driver killed mid-study, resumed, listed and reported on."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import optuna
import pyarrow.fs
import pytest

from mtl_tune.studies import (
    JOURNAL_PREFIX,
    existing_study,
    list_studies,
    open_storage,
    storage_root,
    study_status,
)
from mtl_tune.studies.results._results import read_result_rows
from mtl_tune.studies.spec import RAY_ID_ATTR
from tests.helpers import write_tiny_data
from tests.studies.conftest import (
    CLI,
    NO_SCHEDULER,
    TPE_SPACE,
    BetweenTwoTrials,
    launch_and_kill,
    resume_cli,
    stored_objects,
    tiny_fixed,
    write_spec,
)

TOP = """
name = "cloud"
trainables = ["it7-cosrelu-tuned"]
search = "optuna"
num_samples = 2
max_concurrent = 1
optuna_seed = 1
"""
ROWS = 700  # rows per file: an epoch of the tiny model takes over 2 s


def _read(uri: str) -> str:
    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    with fs.open_input_stream(path) as stream:
        return bytes(stream.read()).decode()


def _between(study: str) -> BetweenTwoTrials:
    """The moment to kill, judged on the files in the store."""

    def read(relative: str) -> str | None:
        # an appended file (the trial record) is held as its parts, read in order (`_parts`)
        parts = sorted(p for p in stored_objects(study) if p.startswith(f"{relative}.parts/"))
        try:
            if parts:
                return "".join(_read(f"{study}/{part}") for part in parts)
            return _read(f"{study}/{relative}")
        except OSError:  # not there yet, or being uploaded
            return None

    return BetweenTwoTrials(read, lambda: list(stored_objects(study)))


@pytest.mark.chaos  # a minute and a half; test_two_nodes runs a study on a store by default
def test_a_study_on_a_store_is_killed_resumed_and_reported(
    s3_bucket: str, tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, ray_tmp: Path,
    monkeypatch: Any,
) -> None:
    local_storage = tmp_path / "local-storage"
    monkeypatch.setenv("MTL_TUNE_STORAGE", str(local_storage))
    data = write_tiny_data(tmp_path / "data", rows=ROWS)
    fixed = tiny_fixed(tiny_bert_dir, data, epochs=2)
    path = write_spec(tmp_path, TOP, fixed, TPE_SPACE + NO_SCHEDULER)
    journal = tmp_path / "optuna.journal"
    study = f"{s3_bucket}/cloud"

    before = launch_and_kill(path, data, s3_bucket, ray_tmp, _between(study),
                             extra=("--optuna-storage", str(journal)))
    finished = [t for t, event in before.items() if event == "finished"]
    (running,) = [t for t, event in before.items() if event == "running"]
    # the kill landed mid-study: the first trial finished, the second ran its second epoch
    assert len(finished) == 1
    root = storage_root(s3_bucket)
    cached = existing_study(root, "cloud")  # the reader's copy, pulled from the store
    epochs_before = {t: _epoch_rows(cached, t) for t in finished}
    (epoch_one,) = _epoch_rows(cached, running)
    # every finished trial's two epochs were in the store before the kill
    assert all(len(rows) == 2 for rows in epochs_before.values())
    # the killed driver's lock stayed behind, naming a process that is gone
    assert "driver.json" in stored_objects(study)

    output = resume_cli("cloud", s3_bucket, ray_tmp, tmp_path / "resume.log")
    assert f"folder {study}" in output

    table = study_status(root, "cloud")  # pulls the copy again
    # the study holds its two trials, both finished
    assert len(table) == 2 and set(table["state"]) == {"TERMINATED"}
    # the trial killed in its second epoch went on from its first epoch's checkpoint, which
    # its new worker read from the store: its first epoch was not run again
    assert _epoch_rows(existing_study(root, "cloud"), running)[0] == epoch_one
    for trial_id, rows in epochs_before.items():
        # a trial finished before the kill kept its epochs as they were: it did not run again
        assert _epoch_rows(cached, trial_id) == rows
    trials = optuna.load_study(study_name="cloud",
                               storage=open_storage(f"{JOURNAL_PREFIX}{journal}")).trials
    # the Optuna record (the local journal) holds each Ray trial once, complete
    assert sorted(t.user_attrs[RAY_ID_ATTR] for t in trials) == sorted(table["trial_id"])
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    # each with its best epoch's checkpoint as a URI of the store
    assert all(t.user_attrs["checkpoint"].startswith(f"{study}/tune/") for t in trials)

    objects = stored_objects(study)
    # the store holds the study: its files, the experiment, each trial's best and last
    # checkpoints, without optimizer state; the resumed driver released its lock
    assert {"study.json", "spec.toml", "trials.jsonl.parts/000000"} <= set(objects)
    assert "driver.json" not in objects
    weights = [p for p in objects if p.endswith("/model.safetensors")]
    assert 2 <= len(weights) <= 4 and not any(p.endswith("optimizer.pt") for p in objects)
    # nothing of the study went to the local storage; the drivers' staging copies are gone,
    # the killed driver's too
    assert not local_storage.exists()
    assert list((tmp_path / "cache" / "drivers").rglob("driver-*")) == []

    listed = list_studies(root)
    assert listed[["study", "trials", "finished"]].values.tolist() == [["cloud", 2, 2]]

    here = tmp_path / "here"
    here.mkdir()
    report = subprocess.run(
        [*CLI, "report", "search", "cloud", "--storage", s3_bucket, "--format", "md,csv"],
        cwd=here, env={**os.environ}, capture_output=True, text=True, timeout=120,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    (folder,) = here.iterdir()
    # the report went to the current folder, and says so
    assert folder.name.startswith("cloud-search-") and (folder / "report.md").is_file()
    assert f"the study is on an object store ({study})" in report.stdout
    # the store got no report
    assert not any(p.startswith("reports/") for p in stored_objects(study))


def _epoch_rows(study_copy: Path, trial_id: str) -> list[tuple[int, float, float]]:
    """(epoch, overall, timestamp) of each reported epoch of a trial in the staged copy."""
    (trial_dir,) = (study_copy / "tune" / "main").glob(f"*{trial_id}*")
    return [(r["epoch"], r["overall"], r["timestamp"]) for r in read_result_rows(trial_dir)]
