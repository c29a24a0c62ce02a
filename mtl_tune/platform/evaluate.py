"""Evaluation: run a model over tokenized splits, return the metrics and per-example predictions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from mtl_tune.platform import metrics
from mtl_tune.platform.batches import eval_order, make_batch
from mtl_tune.platform.model import MultitaskBERT
from mtl_tune.platform.splits import TaskSplit
from mtl_tune.platform.tasks import MAIN_TASKS, TASKS


@dataclass(frozen=True)
class TaskPredictions:
    """Per-example outputs of one split, in the split's row order."""

    task: str
    ids: tuple[str, ...]
    predictions: np.ndarray  # class index (sst, para) or 0..5 similarity (sts)
    labels: np.ndarray | None
    correct: np.ndarray | None  # per-example 0/1 for classification, None for sts


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    predictions: dict[str, TaskPredictions]


@torch.no_grad()
def predict_split(
    model: MultitaskBERT,
    split: TaskSplit,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> TaskPredictions:
    """Predictions for every row of a split (labels used only if present).

    Both sentences of a pair are padded to one width and encoded in one call.
    """
    was_training = model.training
    model.eval()
    outputs = torch.empty(len(split))
    for rows in eval_order(split.lengths, batch_size):
        batch = make_batch(split, rows, joint=True).to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            raw = model.forward_task(split.task, batch.segments).float()
        outputs[rows] = TASKS[split.task].predict(raw, model.heads.sts_head).cpu()
    model.train(was_training)
    preds = outputs.numpy()
    labels = None if split.labels is None else split.labels.numpy()
    correct = None
    if TASKS[split.task].num_classes:  # classes: whole numbers, and right or wrong per row
        preds = preds.astype(np.int64)
        correct = None if labels is None else (preds == labels).astype(np.int8)
    return TaskPredictions(split.task, split.ids, preds, labels, correct)


def score(predictions: Mapping[str, TaskPredictions]) -> dict[str, float]:
    """sst_acc, para_acc, sts_corr, overall and mean_score from labeled predictions."""
    missing = [task for task in MAIN_TASKS if task not in predictions]
    if missing:
        raise ValueError(
            f"scoring needs predictions for 'sst', 'para' and 'sts', but {missing} are missing"
        )
    for task in MAIN_TASKS:
        if predictions[task].labels is None:
            raise ValueError(f"split of task {task!r} has no labels to score against")
    values = task_scores(predictions)
    return metrics.summary(values["sst_acc"], values["para_acc"], values["sts_corr"])


def task_scores(predictions: Mapping[str, TaskPredictions]) -> dict[str, float]:
    """The metric (accuracy or Pearson) of each main task whose predictions have labels."""
    out = {}
    for task in MAIN_TASKS:
        p, spec = predictions.get(task), TASKS[task]
        if p is not None and p.labels is not None:
            out[spec.metric] = spec.score(p.predictions, p.labels)
    return out


def evaluate(
    model: MultitaskBERT,
    splits: Mapping[str, TaskSplit],
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> Evaluation:
    """Scores the three main tasks on labeled splits; returns metrics and per-row predictions."""
    preds = {
        task: predict_split(model, split, batch_size, device, autocast_dtype)
        for task, split in splits.items()
    }
    return Evaluation(score(preds), preds)
