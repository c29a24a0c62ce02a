"""The training loop: one epoch over a task schedule, then a dev evaluation.

It knows nothing about Ray: callers drive `Trainer.run_epoch` and report as they like. Every
epoch's randomness derives from (seed, epoch): initialisation and dropout from
`initialisation_seed`, tasks and batches from `order_seed` (`seed` unless the config splits
them); the lr schedule, the loss combination's learned weights and the early-stopping count are
checkpointed, so a run restored from an epoch-end checkpoint goes on as an uninterrupted one.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mtl_tune.platform.batches import Batch, CyclingBatches
from mtl_tune.platform.bert import BertModel
from mtl_tune.platform.combinations import build_combination
from mtl_tune.platform.compiling import BUCKET, compile_encoder, use_compile
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.device import resolve_device
from mtl_tune.platform.evaluate import Evaluation, evaluate
from mtl_tune.platform.gradients import SharedGradients
from mtl_tune.platform.loss_log import LossLog
from mtl_tune.platform.model import MultitaskBERT
from mtl_tune.platform.param_groups import model_groups
from mtl_tune.platform.patience import patience_ran_out, patience_step
from mtl_tune.platform.progress import Progress
from mtl_tune.platform.sampling import epoch_schedule, steps_of
from mtl_tune.platform.schedule import build_scheduler, load_keeping_rates
from mtl_tune.platform.smart import smoothness
from mtl_tune.platform.splits import Splits
from mtl_tune.platform.task_loss import task_loss, task_output
from mtl_tune.platform.tasks import MAIN_TASKS, TASKS

logger = logging.getLogger(__name__)

CHECK_EVERY = 50  # steps between reads of the device-side loss log (a non-finite loss stops us)
# and between the points of the training-loss curve (each epoch's last step is one too)



@dataclass(frozen=True)
class EpochResult:
    epoch: int
    metrics: dict[str, float]  # dev metrics, train losses, timings
    evaluation: Evaluation
    # (optimizer step counted from the run's start, each task's mean loss since the last point)
    loss_curve: list[tuple[int, dict[str, float]]]


def build_model(config: TrainConfig) -> MultitaskBERT:
    """The pretrained encoder with freshly initialised heads (seeded by
    `config.initialisation_seed`)."""
    encoder = BertModel.from_pretrained(config.backbone_path)
    torch.manual_seed(config.initialisation_seed)
    return MultitaskBERT(encoder, config.heads)


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
        self.combination = build_combination(
            config.combine, self.train_tasks, self.device,
            config.cagrad_c, config.famo_lr, config.famo_decay,
        )
        groups = self.combination.param_groups()
        self._build_optimizer(model_groups(self.model, config))
        n_rows = len(self.train_tasks) if self.combination.rows else 1
        learned = [p for g in groups for p in g["params"]]
        self.grads = SharedGradients(
            self.model.shared_parameters(), self.model.head_parameters() + learned, n_rows
        )
        self.compiled = use_compile(
            config.compile, self.device, self.planned_batches(), config.smart_weight > 0
        )
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
        self.loss_curve: list[tuple[int, dict[str, float]]] = []  # of the last epoch trained
        self.epochs_done = 0
        self.best_overall = -math.inf
        # early stopping: the dev overall to beat by min_delta, and the epochs that did not
        self.patience_reference = -math.inf
        self.stale_epochs = 0

    def _build_optimizer(self, groups: list[dict[str, Any]]) -> None:
        """AdamW over the model's `groups` and the combination's own, and the lr schedule."""
        config = self.config
        # fused AdamW on CUDA and CPU alike: a MiniLM step 95 -> 16 ms on a 2-core CPU
        self.optimizer = torch.optim.AdamW(
            [*groups, *self.combination.param_groups()],
            lr=config.lr, weight_decay=config.weight_decay, fused=True,
        )
        self.scheduler = build_scheduler(
            self.optimizer, config.lr_schedule, config.warmup_ratio, self.planned_steps()
        )

    def _seed_epoch(self, epoch: int) -> np.random.Generator:
        torch.manual_seed(self.config.initialisation_seed * 100_003 + epoch)  # dropout
        return np.random.default_rng([self.config.order_seed, epoch])  # the batches

    def _batch_counts(self) -> dict[str, int]:
        batch = self.config.batch_size
        sizes = {t: -(-len(self.splits[t]["train"]) // batch) for t in self.train_tasks}
        return {"sst": sizes["sst"]} if self.config.sampling == "sst-only" else sizes

    def epoch_steps(self, epoch: int) -> list[list[str]]:
        """The tasks of each optimizer step of epoch `epoch`, drawn from (seed, epoch) alone."""
        cfg = self.config
        rng = np.random.default_rng([cfg.order_seed, epoch, 1])
        schedule = epoch_schedule(
            cfg.sampling, self._batch_counts(), rng, epoch, cfg.epochs, cfg.sampling_temperature
        )
        return steps_of(schedule)

    @functools.cached_property
    def _run_plan(self) -> tuple[list[int], int]:
        """(optimizer steps of each epoch, training batches of the run), every epoch's plan
        drawn once."""
        plans = [self.epoch_steps(e) for e in range(1, self.config.epochs + 1)]
        return list(map(len, plans)), sum(len(tasks) for steps in plans for tasks in steps)

    def planned_batches(self) -> int:
        """Training batches of the whole run."""
        return self._run_plan[1]

    def planned_steps(self) -> int:
        """Optimizer steps of the whole run (what the learning-rate schedule spans)."""
        return sum(self._run_plan[0])

    @property
    def should_stop(self) -> bool:
        """Whether `patience` epochs in a row brought no better dev overall."""
        return patience_ran_out(self.stale_epochs, self.config.patience)

    def progress(self) -> Progress:
        """The epochs done and the early-stopping state, as a checkpoint keeps them."""
        return Progress(epochs_done=self.epochs_done, best_overall=self.best_overall,
                        patience_reference=self.patience_reference,
                        stale_epochs=self.stale_epochs)

    def state_dict(self, optimizer: bool = True) -> dict[str, Any]:
        """What a checkpoint keeps of the run: the model's weights, the epochs done and the
        early-stopping state; with `optimizer`, what resuming needs too (the optimizer, the lr
        schedule and the loss combination's own state)."""
        state: dict[str, Any] = {
            "model": self.model.state_dict(),
            "progress": self.progress().record(),
        }
        if optimizer:
            state["optimizer"] = self.optimizer.state_dict()
            state["scheduler"] = self.scheduler.state_dict()
            state["combination"] = self.combination.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Loads the parts of `state_dict()` that `state` holds."""
        if "model" in state:
            self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            groups = len(state["optimizer"]["param_groups"]) - len(self.combination.param_groups())
            if groups == 1 != len(self.optimizer.param_groups):  # saved before parameter groups:
                # one group of every model parameter; the run goes on as it started
                self._build_optimizer([{"params": list(self.model.parameters())}])
            load_keeping_rates(self.optimizer, self.scheduler, state["optimizer"],
                               state.get("scheduler"))
        if "combination" in state:
            self.combination.load_state_dict(state["combination"])
        if "progress" in state:
            progress = Progress.from_record(state["progress"])
            self.epochs_done, self.best_overall = progress.epochs_done, progress.best_overall
            self.patience_reference = progress.patience_reference
            self.stale_epochs = progress.stale_epochs

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
        steps = self.epoch_steps(epoch)
        if max_steps is not None:
            steps = steps[:max_steps]
        generator = torch.Generator().manual_seed(cfg.seed * 7919 + epoch)
        log = LossLog(self.train_tasks, self.device, epoch, cfg.lr)
        examples = tokens = 0
        compile_seconds = None
        self.model.train()
        start = time.perf_counter()
        combination = self.combination
        for step, tasks in enumerate(steps, start=1):
            first_compiled = self.compiled and self.compile_seconds is None
            step_start = time.perf_counter()
            by_rows = combination.rows and len(tasks) > 1
            self.grads.zero()
            combination.begin_step(tasks)
            batches = []
            for row, task in enumerate(tasks):
                batch = iterators[task].next().to(self.device)
                batches.append(batch)
                with self._autocast():
                    output = task_output(self.model, batch)
                    loss = task_loss(self.model, batch, output)
                    objective = combination.objective(task, loss)
                    if cfg.smart_weight > 0:
                        objective = objective + cfg.smart_weight * self._smoothness(batch, output)
                log.add(task, loss, step)
                if by_rows:
                    self.grads.record(row, objective)
                else:
                    self.grads.add(objective)
                examples += batch.size
                tokens += sum(s.input_ids.numel() for s in batch.segments)
            if by_rows or not combination.rows:
                combination.combine(self.grads, tasks, generator)
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(
                    self.model.parameters(), cfg.max_grad_norm, foreach=True
                )
            self.optimizer.step()
            self.scheduler.step()
            if combination.needs_new_losses:
                with torch.no_grad(), self._autocast():
                    combination.after_step(tasks, [task_loss(self.model, b) for b in batches])
            if first_compiled:
                self._synchronize()
                compile_seconds = self.compile_seconds = time.perf_counter() - step_start
                logger.info("compiled the encoder in %.1f s (first step)", compile_seconds)
            if step % CHECK_EVERY == 0:
                log.check()
                log.mark(step)
            if on_step is not None:
                on_step(step, len(steps))
        log.check()
        if steps:
            log.mark(len(steps))
        self._synchronize()
        seconds = time.perf_counter() - start
        self.epochs_done = epoch
        before = sum(self._run_plan[0][: epoch - 1])  # steps of the epochs before this one
        self.loss_curve = [(before + step, losses) for step, losses in log.curve()]
        out: dict[str, float] = {f"train_loss_{t}": v for t, v in log.means().items()}
        out.update({f"task_weight_{t}": w for t, w in combination.task_weights().items()})
        out.update(
            lr=float(self.scheduler.get_last_lr()[0]),
            epoch_seconds=seconds,
            examples_per_second=examples / seconds if seconds > 0 else 0.0,
            tokens_per_second=tokens / seconds if seconds > 0 else 0.0,
            train_examples=float(examples),
            steps=float(len(steps)),
        )
        if compile_seconds is not None:
            out["compile_seconds"] = compile_seconds
        return out

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        )

    def _smoothness(self, batch: Batch, out: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        return smoothness(
            lambda: task_output(self.model, batch),
            self.model.encoder.embeddings,
            out,
            regression=TASKS[batch.task].num_classes == 0,
            eps=cfg.smart_eps,
            steps=cfg.smart_steps,
        )

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
        overall = evaluation.metrics["overall"]
        self.best_overall = max(self.best_overall, overall)
        self.patience_reference, self.stale_epochs = patience_step(
            self.patience_reference, self.stale_epochs, overall, self.config.min_delta
        )
        return EpochResult(epoch, metrics, evaluation, self.loss_curve)
