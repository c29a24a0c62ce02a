"""Cost per training step of each loss combination and of SMART, against the plain sum.

Prints, measured in one run on the same batches (balanced sampling, the bundled MiniLM or
`--backbone`, batch 32): the median optimizer-step time of each `combine` value and of SMART
(`smart_weight = 1`, `smart_steps = 1` and 2), and each one's ratio to `combine = sum`. Rounds
alternate the configurations so that a machine's drift hits them all alike; the first step of
each epoch (warm-up) is left out.

Usage: python benchmarks/combination_cost.py [--data-dir D] [--per-task N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.splits import Splits
from mtl_tune.platform.train import Trainer

VARIANTS: dict[str, dict[str, object]] = {
    "sum": {},
    "pcgrad": {"combine": "pcgrad"},
    "cagrad": {"combine": "cagrad"},
    "uncertainty": {"combine": "uncertainty"},
    "famo": {"combine": "famo"},
    "smart (1 step)": {"smart_weight": 1.0},
    "smart (2 steps)": {"smart_weight": 1.0, "smart_steps": 2},
}


def step_seconds(config: TrainConfig, splits: Splits, max_steps: int | None) -> list[float]:
    """Seconds of each optimizer step of one epoch, the first (warm-up) left out."""
    trainer = Trainer(config, splits)
    stamps = [time.perf_counter()]

    def stamp(step: int, total: int) -> None:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    trainer.train_epoch(1, on_step=stamp, max_steps=max_steps)
    return list(np.diff(stamps))[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = Path(__file__).resolve().parents[1]
    parser.add_argument("--data-dir", default=os.environ.get(
        "MTL_TUNE_DATA", str(repo.parent / "shared" / "data" / "cs224n")))
    parser.add_argument("--backbone", default="", help="a local BERT folder (default MiniLM)")
    parser.add_argument("--per-task", type=int, default=256, help="train rows per task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-steps", type=int, default=None, help="steps per epoch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = TrainConfig(backbone=args.backbone, data_dir=str(Path(args.data_dir).resolve()),
                         max_examples=args.per_task, batch_size=args.batch_size, epochs=1,
                         pooling="mean",
                         sts_head="cosine-relu", sampling="balanced", compile="off")
    splits = build_bundle(config, splits=("train",)).for_config(config)
    device = Trainer(config, splits).device
    print(f"torch {torch.__version__}, device {device}, {args.threads} threads, "
          f"{args.per_task} train rows/task, {args.rounds} rounds")
    steps: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            steps[name] += step_seconds(config.replace(**VARIANTS[name]), splits, args.max_steps)
    base = statistics.median(steps["sum"])
    print(f"\n{'configuration':16s} {'median step':>12s} {'/ sum':>7s}  (n steps)")
    for name, times in steps.items():
        median = statistics.median(times)
        print(f"{name:16s} {median * 1000:10.1f} ms {median / base:7.2f}  ({len(times)})")


if __name__ == "__main__":
    main()
