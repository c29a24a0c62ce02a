"""The study's results digest (`results.jsonl`): what the driver appends, which experiments it
holds whole, and `study status` on an object store read from it without listing a trial's
folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.fs
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.studies import existing_study, launch_study, status_view, storage_root, view_study
from mtl_tune.studies.spec import load_spec
from mtl_tune.studies.store import append_result, begin_digest, read_digest
from mtl_tune.studies.store._storage import RESULTS_FILE
from tests.studies.conftest import ASHA, TPE_SPACE, stored_objects, write_spec


def test_the_digest_holds_an_experiment_from_its_begin_line(tmp_path: Path) -> None:
    # results of an experiment before its begin line (a driver that kept no digest before a
    # newer one resumed it) do not make it whole: it is left out, and read from its folders
    append_result(tmp_path, "stage1", "a", {"epoch": 1, "overall": 0.1})
    begin_digest(tmp_path, "stage2")
    append_result(tmp_path, "stage2", "b", {"epoch": 1, "overall": 0.2, "config": {"lr": 1},
                                            "train_loss_curve": [1.0, 0.5]})
    append_result(tmp_path, "stage2", "b", {"epoch": 2, "overall": 0.3})
    with open(tmp_path / RESULTS_FILE, "a") as handle:
        handle.write('{"experiment": "stage2", "trial_id": "b", "res')  # a killed writer's
    assert read_digest(tmp_path) == {
        # the config (the record has it) and the loss curve are not copied
        "stage2": {"b": [{"epoch": 1, "overall": 0.2}, {"epoch": 2, "overall": 0.3}]}}
    assert read_digest(tmp_path / "nowhere") == {}


TOP = """
name = "digest"
trainables = ["it10-warmup-decay"]
search = "optuna"
num_samples = 4
seeds = 2
max_concurrent = 4
optuna_seed = 3
"""


def test_status_on_a_store_reads_the_digest_and_no_trial_folder(
    s3_bucket: str, tmp_path: Path, ray_local: None
) -> None:
    path = write_spec(tmp_path, TOP, {"epochs": 3}, TPE_SPACE + ASHA)
    root = storage_root(s3_bucket)
    launch_study(load_spec(str(path)), root, path.read_text(), verbose=0, simulate=True,
                 optuna_storage=f"journal:{tmp_path / 'optuna.log'}")
    shutil.rmtree(root / "digest")  # the launch's copy: status runs on another machine
    view = status_view(root, "digest")
    # read from the study's own files: the reader's copy holds no trial folder
    assert not view.trial_files and not (root / "digest" / "tune").exists()
    assert sorted(p.name for p in (root / "digest").iterdir() if p.is_file()) == [
        RESULTS_FILE, "seed-groups.jsonl", "spec.toml", "study.json", "trials.jsonl"]
    # and it shows what the trials' own result.json files show
    full = view_study(existing_study(root, "digest"))
    assert full.trial_files and len(full.trials) == 8
    pd.testing.assert_frame_equal(view.trials, full.trials)
    shown = CliRunner().invoke(app, ["study", "status", "digest", "--storage", s3_bucket])
    assert shown.exit_code == 0, shown.output
    # its size would need a listing of every object: the line says where to get it
    assert shown.stdout.splitlines()[-1] == (
        f"stored in {s3_bucket}/digest (its size: mtl-tune study list --storage {s3_bucket})")
    best = CliRunner().invoke(app, ["study", "status", "digest", "--storage", s3_bucket,
                                    "--best", "--json"])
    # --best names the best trial's checkpoint: read from the trials' folders
    assert Path(json.loads(best.stdout)["best_trial"]["checkpoint"]).name.startswith(
        "checkpoint_")

    # a study that keeps no digest (launched before it existed) is read from its folders
    fs, base = pyarrow.fs.FileSystem.from_uri(f"{s3_bucket}/digest")
    for name in stored_objects(f"{s3_bucket}/digest"):
        if name.startswith(RESULTS_FILE):
            fs.delete_file(f"{base}/{name}")
    older = status_view(root, "digest")
    assert older.trial_files
    pd.testing.assert_frame_equal(older.trials, full.trials)
