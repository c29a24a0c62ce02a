"""Fractional GPUs: four trials of 0.5 GPU share two (logical) GPUs, all at the same time.

Ray is started with `num_gpus=2` on this CPU-only machine: Ray schedules the GPUs as resources and
sets CUDA_VISIBLE_DEVICES per trial; torch sees no CUDA, so the trials still train on CPU.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import torch
from ray.tune import ExperimentAnalysis

from mtl_tune.studies import launch_study
from mtl_tune.studies.spec import load_spec
from tests.studies.conftest import shutdown_and_check, tiny_fixed, write_spec


@pytest.fixture(scope="module")
def ray_two_gpus() -> Iterator[None]:
    shutdown_and_check()  # the suite's shared Ray, if it runs: this test needs another shape
    ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield
    shutdown_and_check()


def test_four_half_gpu_trials_share_two_gpus_at_once(
    ray_two_gpus: None, tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:
    top = 'name = "packed"\ntrainables = ["it6-balanced"]\nsearch = "grid"\nseeds = 4\n'
    top += "max_concurrent = 4"
    # four epochs: each trial runs long enough for the four to overlap on a busy 2-core machine
    fixed = tiny_fixed(tiny_bert_dir, tiny_data_dir, epochs=4)
    tables = '[scheduler]\ntype = "none"\n\n[resources]\ncpu = 1\ngpu = 0.5'
    path = write_spec(tmp_path, top, fixed, tables)
    outcome = launch_study(load_spec(str(path)), tmp_path / "studies", path.read_text(), verbose=0)
    # the four trials finished
    assert outcome.trials == 4 and outcome.errors == 0
    results = [t.last_result for t in ExperimentAnalysis(str(outcome.folder / "tune/main")).trials]
    # the study's record times each trial's start and end to the microsecond
    events = [json.loads(line) for line in (outcome.folder / "trials.jsonl").read_text()
              .splitlines()]
    starts = {e["trial_id"]: e["time"] for e in events if e["event"] == "running"}
    ends = {e["trial_id"]: e["time"] for e in events if e["event"] == "finished"}
    assert len(starts) == len(ends) == 4
    # all four ran at the same time: the last to start began before the first to end finished
    assert max(starts.values()) < min(ends.values()), (starts, ends)
    gpu_ids = [r["gpu_ids"] for r in results]
    # each trial was given exactly one GPU id ...
    assert all(len(ids.split(",")) == 1 for ids in gpu_ids), gpu_ids
    # ... and each of the two GPUs was shared by two trials
    assert sorted(Counter(gpu_ids).values()) == [2, 2] and len(set(gpu_ids)) == 2
    # each trial got the CPU it asked for
    assert {r["cpus"] for r in results} == {1.0}
    # and trained where its GPU id let torch: on a GPU behind the id where this host has one
    # (Ray's two GPUs are logical: a host with fewer real ones has none behind id 1), else on
    # CPU (this machine: torch sees no CUDA)
    real = torch.cuda.device_count()
    for r in results:
        expected = "cuda" if int(r["gpu_ids"]) < real else "cpu"
        assert r["device"].split(":")[0] == expected, r
