"""A study on a two-node Ray cluster (`ray.cluster_utils.Cluster`): trials run on both nodes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.tune import ExperimentAnalysis

from mtl_tune.studies import launch_study, load_spec
from tests.studies.conftest import shutdown_and_check, tiny_fixed, write_spec


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Cluster]:
    """Head + one worker node of 2 CPUs each.

    A Cluster writes its address where a plain `ray.init()` on this machine would join it; a
    private RAY_TMPDIR keeps other people's Ray jobs on the same machine out of it.
    """
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
