"""Training throughput of our trainer: per sampling scheme, PCGrad's cost, and vs a plain loop.

Prints, measured in one run on the same data and the bundled MiniLM:
  * training examples/s of `Trainer.train_epoch` for each sampling scheme;
  * the PCGrad cost ratio: median step time with combine=pcgrad / with combine=sum;
  * our trainer's examples/s / a straightforward loop's (transformers.BertModel, random batches
    padded to the longest, balanced round-robin, batch 32, sum of losses, AdamW), A/B alternating.

Usage: python benchmarks/trainable_throughput.py [--data-dir D] [--per-task N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.sampling import SCHEMES
from mtl_tune.platform.splits import Splits
from mtl_tune.platform.tasks import MAIN_TASKS
from mtl_tune.platform.train import Trainer

TASKS = MAIN_TASKS


def our_epoch(config: TrainConfig, splits: Splits) -> tuple[float, list[float]]:
    """One epoch of our trainer: (examples/s, per-step seconds)."""
    trainer = Trainer(config, splits)
    stamps = [time.perf_counter()]
    metrics = trainer.train_epoch(1, on_step=lambda step, total: stamps.append(time.perf_counter()))
    return metrics["examples_per_second"], list(np.diff(stamps))


class PlainLoop:
    """The straightforward reference: HF BertModel, random batches padded to the longest."""

    def __init__(self, backbone: Path, texts: dict[str, list], labels: dict[str, np.ndarray],
                 batch_size: int) -> None:
        import transformers

        self.tok = transformers.BertTokenizerFast.from_pretrained(str(backbone))
        self.bert = transformers.BertModel.from_pretrained(
            str(backbone), attn_implementation="sdpa"
        )
        hidden = self.bert.config.hidden_size
        self.heads = torch.nn.ModuleDict({
            "sst": torch.nn.Linear(hidden, 5), "para": torch.nn.Linear(2 * hidden, 1),
            "sts": torch.nn.Linear(2 * hidden, 1)})
        params = [*self.bert.parameters(), *self.heads.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=5e-5)
        self.texts, self.labels, self.batch_size = texts, labels, batch_size

    def _encode(self, sentences: list[str]) -> torch.Tensor:
        enc = self.tok(sentences, padding="longest", truncation=True, max_length=128,
                       return_tensors="pt")
        return self.bert(**enc).pooler_output

    def epoch(self, rng: np.random.Generator) -> float:
        """Balanced round-robin over random batches; returns examples/s."""
        self.bert.train()
        orders = {t: rng.permutation(len(self.labels[t])) for t in TASKS}
        n_batches = max(-(-len(o) // self.batch_size) for o in orders.values())
        examples, start = 0, time.perf_counter()
        for b in range(n_batches):
            self.optimizer.zero_grad()
            losses = []
            for task in TASKS:
                order = orders[task]
                rows = np.take(order, range(b * self.batch_size, (b + 1) * self.batch_size),
                               mode="wrap")
                y = torch.as_tensor(self.labels[task][rows])
                if task == "sst":
                    logits = self.heads["sst"](self._encode([self.texts[task][i][0] for i in rows]))
                    losses.append(F.cross_entropy(logits, y.long()))
                else:
                    u = self._encode([self.texts[task][i][0] for i in rows])
                    v = self._encode([self.texts[task][i][1] for i in rows])
                    out = self.heads[task](torch.cat([u, v], dim=-1)).squeeze(-1)
                    loss = (F.binary_cross_entropy_with_logits(out, y.float()) if task == "para"
                            else F.mse_loss(out, y.float()))
                    losses.append(loss)
                examples += len(rows)
            torch.stack(losses).sum().backward()
            self.optimizer.step()
        return examples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = Path(__file__).resolve().parents[1]
    parser.add_argument("--data-dir", default=os.environ.get(
        "MTL_TUNE_DATA", str(repo.parent / "shared" / "data" / "cs224n")))
    parser.add_argument("--per-task", type=int, default=320, help="train rows per task")
    parser.add_argument("--repeats", type=int, default=3, help="A/B rounds vs the plain loop")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = TrainConfig(data_dir=str(Path(args.data_dir).resolve()), max_examples=args.per_task,
                         epochs=1, pooling="mean", sts_head="cosine-relu", device="cpu")
    bundle = build_bundle(config, splits=("train",))
    splits = bundle.for_config(config)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.per_task} train rows/task")

    print("\n# examples/s per sampling scheme (our trainer, one epoch each)")
    for scheme in SCHEMES:
        rate, _ = our_epoch(config.replace(sampling=scheme), splits)
        print(f"  {scheme:13s} {rate:7.1f} examples/s")

    print("\n# PCGrad cost (balanced sampling, same batches)")
    _, sum_steps = our_epoch(config.replace(sampling="balanced", combine="sum"), splits)
    _, pc_steps = our_epoch(config.replace(sampling="balanced", combine="pcgrad"), splits)
    ratio = statistics.median(pc_steps) / statistics.median(sum_steps)
    print(f"  median step: sum {statistics.median(sum_steps):.3f} s, "
          f"pcgrad {statistics.median(pc_steps):.3f} s -> pcgrad/sum {ratio:.2f} "
          "(target <= 1.15)")

    print("\n# ours vs a straightforward loop (balanced round-robin, batch 32), A/B alternating")
    from mtl_tune.platform.data import DataConfig, read_splits

    examples = read_splits(DataConfig(data_dir=config.data_dir, splits=("train",),
                                      max_examples=args.per_task))
    texts = {t: list(examples[t]["train"].texts) for t in TASKS}
    labels = {t: examples[t]["train"].labels for t in TASKS}
    assert all(v is not None for v in labels.values())
    plain = PlainLoop(config.backbone_path, texts, labels, config.batch_size)  # type: ignore[arg-type]
    ours_rates, plain_rates = [], []
    for r in range(args.repeats):
        ours_rates.append(our_epoch(config.replace(sampling="balanced", seed=r), splits)[0])
        plain_rates.append(plain.epoch(np.random.default_rng(r)))
        print(f"  round {r + 1}: ours {ours_rates[-1]:.1f}, plain {plain_rates[-1]:.1f} "
              f"examples/s")
    ratios = [a / b for a, b in zip(ours_rates, plain_rates, strict=True)]
    print(f"\nSUMMARY ours {statistics.median(ours_rates):.1f} ex/s, plain loop "
          f"{statistics.median(plain_rates):.1f} ex/s, median ratio ours/plain "
          f"{statistics.median(ratios):.2f} (n={args.repeats}); pcgrad/sum step {ratio:.2f}")


if __name__ == "__main__":
    main()
