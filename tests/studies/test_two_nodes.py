"""A study on a two-node Ray cluster (`ray.cluster_utils.Cluster`): trials run on both nodes,
with the study in a shared folder or on an object store (S3 on loopback) as its only storage."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import tune
from ray.cluster_utils import Cluster
from ray.tune import ExperimentAnalysis
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.reports import report_ablation
from mtl_tune.studies import JOURNAL_PREFIX, launch_study, load_results, storage_root, uri_of
from mtl_tune.studies.driver import _driver_run as driver_run
from mtl_tune.studies.spec import load_spec
from mtl_tune.studies.store import StudyStore
from tests.conftest import S3_ENV
from tests.studies.conftest import shutdown_and_check, stored_objects, tiny_fixed, write_spec

pytestmark = pytest.mark.process  # a Ray cluster of two nodes

NEW_FILE = "decisions.jsonl"  # a study file no mtl-tune code knows: written through the store only


class NewStudyFile(tune.Callback):
    """A new study file's writer, as the next one (PBT's decision log) will be: a line per trial
    result, appended through the study's store and nothing else. At each result it first reads
    the file as the object store holds it (`found`), beside the lines written before (`lines`)."""

    lines: list[str] = []  # class-wide: the driver's copy is the one Tune calls
    found: list[tuple[int, str]] = []

    def __init__(self, folder: Path) -> None:
        self.study = StudyStore.at(folder).uri  # kept as a URI, as a pickled callback must

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        if NewStudyFile.lines:
            NewStudyFile.found.append((len(NewStudyFile.lines), _stored_text(self.study)))
        line = json.dumps({"trial": trial.trial_id, "epoch": result["training_iteration"]})
        StudyStore.open(self.study).append_lines(NEW_FILE, [line])
        NewStudyFile.lines.append(line)


def _stored_text(study: str) -> str:
    """The appended file as the object store holds it: its parts, in order (`_parts`)."""
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(f"{study}/{NEW_FILE}.parts")
    parts = sorted(i.path for i in fs.get_file_info(pyarrow.fs.FileSelector(path))
                   if i.type == pyarrow.fs.FileType.File)
    text = ""
    for part in parts:
        with fs.open_input_stream(part) as stream:
            text += bytes(stream.read()).decode()
    return text


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Cluster]:
    """Head + one worker node of 2 CPUs each.

    A Cluster writes its address where a plain `ray.init()` on this machine would join it; a
    private RAY_TMPDIR keeps other people's Ray jobs on the same machine out of it.
    """
    shutdown_and_check()  # the suite's shared Ray, if it runs: this test needs two nodes
    previous = os.environ.get("RAY_TMPDIR")
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths
    os.environ["RAY_TMPDIR"] = ray_tmp
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        cluster.add_node(num_cpus=2)
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutdown_and_check()
        if previous is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = previous
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture
def s3_job(two_nodes: Cluster, s3_endpoint: str) -> Iterator[None]:
    """This process's job on the cluster, joined again with the S3 server's endpoint and
    credentials in its workers' environment (the nodes' own processes started without them),
    as a user's job on a cluster passes its own; the plain job again afterwards."""
    env = {key: os.environ[key] for key in S3_ENV}
    ray.shutdown()
    ray.init(address=two_nodes.address, log_to_driver=False, runtime_env={"env_vars": env})
    try:
        yield
    finally:
        ray.shutdown()
        ray.init(address=two_nodes.address, log_to_driver=False)


def test_trials_run_on_both_nodes(
    two_nodes: Cluster, tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:
    # the study sees both nodes
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    top = 'name = "spread"\ntrainables = ["it3-cosine-sts"]\nsearch = "grid"\nseeds = 2\n'
    top += "max_concurrent = 2"
    # two CPUs per trial: a node holds one trial, so two trials at once need both nodes
    tables = '[scheduler]\ntype = "none"\n\n[resources]\ncpu = 2'
    path = write_spec(tmp_path, top, tiny_fixed(tiny_bert_dir, tiny_data_dir), tables)
    outcome = launch_study(load_spec(str(path)), tmp_path / "studies", path.read_text(), verbose=0)
    # both trials finished
    assert outcome.trials == 2 and outcome.errors == 0
    results = [t.last_result for t in ExperimentAnalysis(str(outcome.folder / "tune/main")).trials]
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    # the trials ran on the two distinct nodes of the cluster
    assert {r["node_id"] for r in results} == nodes


def test_a_study_whose_only_storage_is_an_object_store(
    s3_job: None, s3_bucket: str, tmp_path: Path, tiny_bert_dir: Path,
    tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    here = tmp_path / "here"  # the current folder: where reports of a store study go
    here.mkdir()
    monkeypatch.chdir(here)
    local_storage = tmp_path / "local-storage"
    monkeypatch.setenv("MTL_TUNE_STORAGE", str(local_storage))
    top = 'name = "cloud"\ntrainables = ["it3-cosine-sts"]\nsearch = "grid"\nseeds = 2\n'
    top += "max_concurrent = 2"
    tables = '[scheduler]\ntype = "none"\n\n[resources]\ncpu = 2'
    (tmp_path / "spec").mkdir()
    path = write_spec(tmp_path / "spec", top, tiny_fixed(tiny_bert_dir, tiny_data_dir), tables)
    journal = tmp_path / "optuna" / "cloud.journal"  # the Optuna record: the user's choice
    journal.parent.mkdir()
    root = storage_root(s3_bucket)
    plain_run_config = driver_run.run_config

    def with_new_file(spec: Any, folder: Path, *args: Any, **kwargs: Any) -> Any:
        config = plain_run_config(spec, folder, *args, **kwargs)
        return dataclasses.replace(config, callbacks=[*config.callbacks, NewStudyFile(folder)])

    monkeypatch.setattr(driver_run, "run_config", with_new_file)
    NewStudyFile.lines.clear()
    NewStudyFile.found.clear()
    outcome = launch_study(load_spec(str(path)), root, path.read_text(),
                           optuna_storage=f"{JOURNAL_PREFIX}{journal}", verbose=0)
    assert outcome.trials == 2 and outcome.errors == 0
    results = load_results(outcome.folder)
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    # the trials ran on the two nodes, each writing its checkpoints to the store
    assert set(results["node_id"]) == nodes
    stored = stored_objects(f"{s3_bucket}/cloud")
    assert {"study.json", "spec.toml", "trials.jsonl.parts/000000"} <= set(stored)
    # the file written through the store alone was in the store at the driver's next event,
    # each time with every line written before it; it holds both results (2 trials x 1 epoch)
    assert len(NewStudyFile.lines) == 2 and len(NewStudyFile.found) == 1
    for written, text in NewStudyFile.found:
        assert text.splitlines() == NewStudyFile.lines[:written]
    assert _stored_text(f"{s3_bucket}/cloud").splitlines() == NewStudyFile.lines
    trial_dirs = {p.split("/")[2] for p in stored if p.endswith("/model.safetensors")}
    assert len(trial_dirs) == 2

    first = report_ablation(outcome.folder, formats=("csv",), data_dir=tiny_data_dir,
                            n_resamples=200)
    (test_row,) = first.tables["test"].to_dict("records")
    # the best checkpoint was scored on the test split, its weights downloaded once to the cache
    assert test_row["labeled"] and not test_row["cached"] and test_row["overall"] > 0
    fetched = list((tmp_path / "cache").rglob("model.safetensors"))
    assert [p.parent.name for p in fetched] == [Path(test_row["checkpoint"]).name]
    # the scores went to the store's cache of the study; a second report reads them from it
    assert any(p.startswith("cache/test-scores/") for p in stored_objects(f"{s3_bucket}/cloud"))
    second = report_ablation(outcome.folder, formats=("csv",), data_dir=tiny_data_dir,
                             n_resamples=200)
    assert second.tables["test"]["cached"].tolist() == [True]
    # both reports went to the current folder
    assert sorted(p.parent for p in (first.folder, second.folder)) == [here, here]

    # `predict` takes the checkpoint's URI, and writes its files to the current folder
    checkpoint = uri_of(Path(test_row["checkpoint"]))
    assert checkpoint.startswith(f"{s3_bucket}/cloud/tune/main/")
    predicted = CliRunner().invoke(
        app, ["predict", checkpoint, "--split", "dev", "--data-dir", str(tiny_data_dir)]
    )
    assert predicted.exit_code == 0, predicted.output
    assert (here / "predictions-dev" / "scores.json").is_file()

    # no study file was written outside the store and the Ray nodes' temporary folders: here
    # only the copies in the cache, the user's spec, Optuna journal, reports and predictions
    assert not local_storage.exists()
    assert list((tmp_path / "cache" / "drivers").rglob("driver-*")) == []
    elsewhere = [
        p for p in tmp_path.rglob("*") if p.is_file()
        and not p.is_relative_to(tmp_path / "cache" / "stores")
        and not p.is_relative_to(tmp_path / "cache" / "checkpoints")  # predict's download
        and p.parent not in (path.parent, journal.parent)
        and not p.is_relative_to(here)
    ]
    assert elsewhere == []
