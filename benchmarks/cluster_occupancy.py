"""GPU occupancy of a simulated study on a cluster of several nodes (`ray.cluster_utils.Cluster`).

A rehearsal (`study launch --simulate`) of TPE + ASHA over `--trials` trials at 0.5 GPU each
runs on `--nodes` nodes of 4 logical GPUs (and 4 CPUs) each, every simulated epoch lasting
`--epoch-seconds`. From each trial's own start and end (its first report's timestamp less that
epoch's time, its last report's timestamp) it prints the share of the cluster's
GPU-seconds occupied between the first start and the last end (a GPU, by its node and Ray's GPU
id that each trial reports, is occupied while a trial holds it), the reference being a cluster
busy all that time (1.0), and the share the trials held (0.5 GPU each, times their spans); and
it checks that the head reads every trial's results and checkpoints afterwards.

    .venv/bin/python benchmarks/cluster_occupancy.py [--nodes 4] [--trials 200]
        [--epoch-seconds 20] [--epochs 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

SPEC = """
name = "occupancy"
trainables = ["it10-warmup-decay"]
search = "optuna"
num_samples = {trials}
max_concurrent = {slots}
optuna_seed = 0

[fixed]
epochs = {epochs}

[space]
lr = {{ loguniform = [1e-5, 1e-3] }}
dropout = {{ uniform = [0.1, 0.5] }}

[scheduler]
type = "asha"
grace_period = 1
reduction_factor = 2

[resources]
cpu = 0.5
gpu = 0.5
"""
GPUS_PER_NODE = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--epoch-seconds", type=float, default=20.0)
    parser.add_argument("--epochs", type=int, default=4)
    options = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster
    from ray.tune import ExperimentAnalysis

    from mtl_tune.studies import launch_study
    from mtl_tune.studies.results import read_result_rows
    from mtl_tune.studies.spec import load_spec

    gpus = options.nodes * GPUS_PER_NODE
    slots = int(gpus / 0.5)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": GPUS_PER_NODE, "num_gpus": GPUS_PER_NODE, "include_dashboard": False})
    for _ in range(options.nodes - 1):
        cluster.add_node(num_cpus=GPUS_PER_NODE, num_gpus=GPUS_PER_NODE)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "occupancy.toml"
            path.write_text(SPEC.format(trials=options.trials, slots=slots,
                                        epochs=options.epochs))
            started = time.perf_counter()
            outcome = launch_study(load_spec(str(path)), Path(tmp) / "studies", path.read_text(),
                                   address=cluster.address, verbose=0, simulate=True,
                                   epoch_seconds=options.epoch_seconds)
            wall = time.perf_counter() - started
            spans, nodes, unread = [], set(), 0
            by_gpu: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for trial in ExperimentAnalysis(str(outcome.folder / "tune" / "main")).trials:
                rows = read_result_rows(Path(str(trial.path)))
                checkpoints = list(Path(str(trial.path)).glob("checkpoint_*"))
                if not rows or not checkpoints:
                    unread += 1
                    continue
                start = rows[0]["timestamp"] - rows[0]["time_this_iter_s"]
                spans.append((start, rows[-1]["timestamp"]))
                nodes.add(rows[-1]["node_id"])
                for gpu in str(rows[-1]["gpu_ids"]).split(","):
                    by_gpu.setdefault((rows[-1]["node_id"], gpu), []).append(spans[-1])
            first, last = min(s for s, _ in spans), max(e for _, e in spans)
            # a GPU-second is occupied when a trial holds that GPU (by its node and id)
            occupied = sum(_union(intervals) for intervals in by_gpu.values())
            occupancy = occupied / (gpus * (last - first))
            held = sum((end - start) * 0.5 for start, end in spans)
            epochs = sum(t for t, _ in outcome.trial_epochs)
            print(f"{options.nodes} nodes x {GPUS_PER_NODE} logical GPUs, {len(spans)} of "
                  f"{options.trials} trials read from the head ({unread} unreadable), on "
                  f"{len(nodes)} nodes; {epochs} epochs of {options.epoch_seconds:g} s; "
                  f"{slots} trials at a time")
            print(f"GPU occupancy: {occupancy:.3f} of the cluster's GPU-seconds between the "
                  f"first start and the last end ({last - first:.0f} s) had a trial on that "
                  f"GPU ({len(by_gpu)} GPUs by node and id; reference: 1.0, a cluster busy all "
                  f"that time); launch to outcome {wall:.0f} s")
            print(f"GPU share held: {held / (gpus * (last - first)):.3f} (each trial's 0.5 "
                  "GPU times its span: a GPU holding one trial of two counts half)")
            busy = epochs * options.epoch_seconds * 0.5 / (gpus * (last - first))
            print(f"of which the epochs themselves: {busy:.3f} (the rest: trial start-up and "
                  "reporting while the trial holds its GPU)")
    finally:
        ray.shutdown()
        cluster.shutdown()


def _union(intervals: list[tuple[float, float]]) -> float:
    """The seconds covered by at least one of the intervals."""
    covered, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            covered += stop - max(start, end)
            end = stop
    return covered


if __name__ == "__main__":
    main()
