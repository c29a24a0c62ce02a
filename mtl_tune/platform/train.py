"""The training loop: one epoch over a task schedule, then a dev evaluation.

It knows nothing about Ray: callers drive `Trainer.run_epoch` and report as they like. Every
epoch's randomness derives from (seed, epoch), so a run restored from an epoch-end checkpoint
continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mtl_tune.exceptions import TrainingError
from mtl_tune.platform.batches import Batch, CyclingBatches
from mtl_tune.platform.bert import BertModel
from mtl_tune.platform.compiling import BUCKET, compile_encoder, use_compile
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.evaluate import Evaluation, evaluate
from mtl_tune.platform.gradients import SharedGradients
from mtl_tune.platform.loss_log import LossLog
from mtl_tune.platform.model import MultitaskBERT
from mtl_tune.platform.sampling import epoch_schedule
from mtl_tune.platform.splits import Splits
from mtl_tune.platform.tasks import MAIN_TASKS, TASKS

logger = logging.getLogger(__name__)

CHECK_EVERY = 50  # steps between reads of the device-side loss log (a non-finite loss stops us)



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
    return TASKS[batch.task].loss(out, batch.labels, model.heads.sts_head)


class Trainer:
    """Holds the model, optimizer and data of one run; `run_epoch` trains and evaluates.

    A step never waits for the GPU: losses are summed on the device (`LossLog`, read every
    `CHECK_EVERY` steps), gradients go into preallocated buffers (`SharedGradients`), and each
    task's forward is followed by its backward, so only one task's activations are alive.
    """

    def __init__(self, config: TrainConfig, splits: Splits, model: MultitaskBERT | None = None):
        self.config = config
        self.device = resolve_device(config.device)
        self.splits = splits
        self.train_tasks = [
            t for t in MAIN_TASKS if t in splits and "train" in splits[t]
        ]
        self.model = (model or build_model(config)).to(self.device)
        cuda = self.device.type == "cuda"
        self.autocast_dtype = torch.bfloat16 if cuda else None
        # fused AdamW on CUDA and CPU alike: a MiniLM step 95 -> 16 ms on a 2-core CPU
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
        n_rows = len(self.train_tasks) if config.combine == "pcgrad" else 1
        self.grads = SharedGradients(
            self.model.shared_parameters(), self.model.head_parameters(), n_rows
        )
        self.compiled = use_compile(config.compile, self.device, self.planned_batches())
        if self.compiled:
            compile_encoder(self.model.encoder, self.device)
        self.batch_multiple = BUCKET if self.compiled else 1  # compiled: few distinct widths
        # on CPU a dense word-embedding gradient is a fresh (vocab, hidden) buffer per backward,
        # page-faulted in at ~1 GB/s (8% of a MiniLM step); a sparse one holds the used rows
        # only (the compiler wants dense gradients, and on a GPU the buffer costs nothing)
        self.model.encoder.embeddings.word_embeddings.sparse = (
            self.device.type == "cpu" and not self.compiled
        )
        self.compile_seconds: float | None = None  # the first compiled step, once per trainer
        self.epochs_done = 0
        self.best_overall = -math.inf

    def _seed_epoch(self, epoch: int) -> np.random.Generator:
        torch.manual_seed(self.config.seed * 100_003 + epoch)
        return np.random.default_rng([self.config.seed, epoch])

    def _batch_counts(self) -> dict[str, int]:
        batch = self.config.batch_size
        sizes = {t: -(-len(self.splits[t]["train"]) // batch) for t in self.train_tasks}
        return {"sst": sizes["sst"]} if self.config.sampling == "sst-only" else sizes

    def planned_batches(self) -> int:
        """Training batches of the whole run (the first epoch's count times the epochs)."""
        cfg = self.config
        first = epoch_schedule(
            cfg.sampling, self._batch_counts(), np.random.default_rng(0), 1, cfg.epochs
        )
        return len(first) * cfg.epochs

    def train_epoch(
        self,
        epoch: int,
        on_step: Callable[[int, int], None] | None = None,
        max_steps: int | None = None,
    ) -> dict:
        """Trains one epoch (its first `max_steps` steps if given, for benchmarks).

        Returns:
            Each task's mean train loss, throughput in examples and padded tokens per second,
            and `compile_seconds` in the epoch whose first step compiled the encoder.

        Raises:
            TrainingError: A loss was not finite (naming its task, epoch and step).
        """
        cfg = self.config
        rng = self._seed_epoch(epoch)
        iterators = {
            # both sentences of a pair in one encoder call: fewer, larger kernels (faster on
            # CPU too, despite the shorter sentence's padding)
            t: CyclingBatches(
                self.splits[t]["train"], cfg.batch_size, rng, self.batch_multiple, joint=True
            )
            for t in self.train_tasks
        }
        steps = steps_of(epoch_schedule(cfg.sampling, self._batch_counts(), rng, epoch, cfg.epochs))
        if max_steps is not None:
            steps = steps[:max_steps]
        generator = torch.Generator().manual_seed(cfg.seed * 7919 + epoch)
        log = LossLog(self.train_tasks, self.device, epoch, cfg.lr)
        examples = tokens = 0
        compile_seconds = None
        self.model.train()
        start = time.perf_counter()
        for step, tasks in enumerate(steps, start=1):
            first_compiled = self.compiled and self.compile_seconds is None
            step_start = time.perf_counter()
            surgery = cfg.combine == "pcgrad" and len(tasks) > 1
            self.grads.zero()
            for row, task in enumerate(tasks):
                batch = iterators[task].next().to(self.device)
                with torch.autocast(
                    self.device.type,
                    dtype=self.autocast_dtype,
                    enabled=self.autocast_dtype is not None,
                ):
                    loss = task_loss(self.model, batch)
                log.add(task, loss, step)
                if surgery:
                    self.grads.record(row, loss)
                else:
                    self.grads.add(loss)
                examples += batch.size
                tokens += sum(s.input_ids.numel() for s in batch.segments)
            if surgery:
                self.grads.combine_pcgrad(len(tasks), generator)
            self.optimizer.step()
            if first_compiled:
                self._synchronize()
                compile_seconds = self.compile_seconds = time.perf_counter() - step_start
                logger.info("compiled the encoder in %.1f s (first step)", compile_seconds)
            if step % CHECK_EVERY == 0:
                log.check()
            if on_step is not None:
                on_step(step, len(steps))
        log.check()
        self._synchronize()
        seconds = time.perf_counter() - start
        self.epochs_done = epoch
        out: dict[str, float] = {f"train_loss_{t}": v for t, v in log.means().items()}
        out.update(
            epoch_seconds=seconds,
            examples_per_second=examples / seconds if seconds > 0 else 0.0,
            tokens_per_second=tokens / seconds if seconds > 0 else 0.0,
            train_examples=float(examples),
            steps=float(len(steps)),
        )
        if compile_seconds is not None:
            out["compile_seconds"] = compile_seconds
        return out

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def evaluate(self, split: str = "dev") -> Evaluation:
        # the compiled encoder is for training shapes; evaluation runs eagerly
        with torch.compiler.set_stance("force_eager" if self.compiled else "default"):
            return evaluate(
                self.model,
                {t: self.splits[t][split] for t in MAIN_TASKS},
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
