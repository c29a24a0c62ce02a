"""The training loop: one epoch over a task schedule, then a dev evaluation.

It knows nothing about Ray: callers drive `Trainer.run_epoch` and report as they like. Every
epoch's randomness derives from (seed, epoch), so a run restored from an epoch-end checkpoint
continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mtl_tune.exceptions import TrainingError
from mtl_tune.platform.batches import Batch, CyclingBatches
from mtl_tune.platform.bert import BertModel
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.data import TaskSplit
from mtl_tune.platform.evaluate import Evaluation, evaluate
from mtl_tune.platform.heads import similarity_target
from mtl_tune.platform.model import MultitaskBERT
from mtl_tune.platform.pcgrad import pcgrad_backward
from mtl_tune.platform.sampling import epoch_schedule

logger = logging.getLogger(__name__)

Splits = Mapping[str, Mapping[str, TaskSplit]]  # task -> split -> tokenized data


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    metrics: dict[str, float]  # dev metrics, train losses, timings
    evaluation: Evaluation


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' was asked for, but no CUDA device is visible")
    return torch.device(name)


def build_model(config: TrainConfig) -> MultitaskBERT:
    """The pretrained encoder with freshly initialised heads (seeded by `config.seed`)."""
    encoder = BertModel.from_pretrained(config.backbone_path)
    torch.manual_seed(config.seed)
    return MultitaskBERT(encoder, config.heads)


def steps_of(schedule: list[str]) -> list[list[str]]:
    """Groups a task schedule into optimizer steps: a step ends before a task would repeat."""
    steps: list[list[str]] = []
    for task in schedule:
        if not steps or task in steps[-1]:
            steps.append([])
        steps[-1].append(task)
    return steps


def task_loss(model: MultitaskBERT, batch: Batch) -> torch.Tensor:
    assert batch.labels is not None, "training batches carry labels"
    out = model.forward_task(batch.task, batch.segments).float()
    if batch.task in ("sst", "cfimdb"):
        return F.cross_entropy(out, batch.labels)
    if batch.task == "para":
        return F.binary_cross_entropy_with_logits(out, batch.labels.float())
    return F.mse_loss(out, similarity_target(model.heads.sts_head, batch.labels))


class Trainer:
    """Holds the model, optimizer and data of one run; `run_epoch` trains and evaluates."""

    def __init__(self, config: TrainConfig, splits: Splits, model: MultitaskBERT | None = None):
        self.config = config
        self.device = resolve_device(config.device)
        self.splits = splits
        self.train_tasks = [
            t for t in ("sst", "para", "sts") if t in splits and "train" in splits[t]
        ]
        self.model = (model or build_model(config)).to(self.device)
        cuda = self.device.type == "cuda"
        self.autocast_dtype = torch.bfloat16 if cuda else None
        # fused AdamW on CUDA and CPU alike: a MiniLM step 95 -> 16 ms on a 2-core CPU
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
        self.epochs_done = 0
        self.best_overall = -math.inf

    def _seed_epoch(self, epoch: int) -> np.random.Generator:
        torch.manual_seed(self.config.seed * 100_003 + epoch)
        return np.random.default_rng([self.config.seed, epoch])

    def train_epoch(self, epoch: int, on_step: Callable[[int, int], None] | None = None) -> dict:
        """Trains one epoch; returns each task's mean train loss and the throughput."""
        cfg = self.config
        rng = self._seed_epoch(epoch)
        iterators = {
            t: CyclingBatches(self.splits[t]["train"], cfg.batch_size, rng)
            for t in self.train_tasks
        }
        sizes = {t: len(it) for t, it in iterators.items()}
        if cfg.sampling == "sst-only":
            sizes = {"sst": sizes["sst"]}
        steps = steps_of(epoch_schedule(cfg.sampling, sizes, rng, epoch, cfg.epochs))
        generator = torch.Generator().manual_seed(cfg.seed * 7919 + epoch)
        shared, heads = self.model.shared_parameters(), self.model.head_parameters()
        loss_sums = dict.fromkeys(self.train_tasks, 0.0)
        loss_counts = dict.fromkeys(self.train_tasks, 0)
        examples = 0
        self.model.train()
        start = time.perf_counter()
        for step, tasks in enumerate(steps, start=1):
            self.optimizer.zero_grad(set_to_none=True)
            losses = []
            for task in tasks:
                batch = iterators[task].next().to(self.device)
                with torch.autocast(
                    self.device.type,
                    dtype=self.autocast_dtype,
                    enabled=self.autocast_dtype is not None,
                ):
                    loss = task_loss(self.model, batch)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"non-finite loss {loss.item()} on task {task!r} at epoch {epoch}, "
                        f"step {step}; lower lr (now {cfg.lr}) or check the data"
                    )
                losses.append(loss)
                loss_sums[task] += loss.item()
                loss_counts[task] += 1
                examples += batch.size
            if cfg.combine == "pcgrad" and len(losses) > 1:
                pcgrad_backward(losses, shared, generator, head_params=heads)
            else:
                torch.stack(losses).sum().backward()
            self.optimizer.step()
            if on_step is not None:
                on_step(step, len(steps))
        seconds = time.perf_counter() - start
        self.epochs_done = epoch
        out: dict[str, float] = {
            f"train_loss_{t}": loss_sums[t] / loss_counts[t]
            for t in self.train_tasks
            if loss_counts[t]
        }
        out.update(
            epoch_seconds=seconds,
            examples_per_second=examples / seconds if seconds > 0 else 0.0,
            train_examples=float(examples),
            steps=float(len(steps)),
        )
        return out

    def evaluate(self, split: str = "dev") -> Evaluation:
        return evaluate(
            self.model,
            {t: self.splits[t][split] for t in ("sst", "para", "sts")},
            self.config.eval_batch_size,
            self.device,
            self.autocast_dtype,
        )

    def run_epoch(
        self, epoch: int, on_step: Callable[[int, int], None] | None = None
    ) -> EpochResult:
        """Trains epoch `epoch` (1-based) and evaluates on dev."""
        train = self.train_epoch(epoch, on_step)
        eval_start = time.perf_counter()
        evaluation = self.evaluate("dev")
        metrics = {**evaluation.metrics, **train, "eval_seconds": time.perf_counter() - eval_start}
        metrics["epoch"] = float(epoch)
        self.best_overall = max(self.best_overall, evaluation.metrics["overall"])
        return EpochResult(epoch, metrics, evaluation)
