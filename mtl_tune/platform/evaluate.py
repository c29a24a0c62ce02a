"""Evaluation: run a model over tokenized splits, return the metrics and per-example predictions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from mtl_tune.platform import metrics
from mtl_tune.platform.batches import eval_order, make_batch
from mtl_tune.platform.data import TaskSplit
from mtl_tune.platform.heads import similarity_to_labels
from mtl_tune.platform.model import MultitaskBERT


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
        if split.task in ("sst", "cfimdb"):
            out = raw.argmax(dim=-1).float()
        elif split.task == "para":
            out = (raw > 0).float()
        else:
            out = similarity_to_labels(model.heads.sts_head, raw)
        outputs[rows] = out.cpu()
    model.train(was_training)
    preds = outputs.numpy()
    labels = None if split.labels is None else split.labels.numpy()
    correct = None
    if labels is not None and split.task != "sts":
        correct = (preds == labels).astype(np.int8)
    if split.task != "sts":
        preds = preds.astype(np.int64)
    return TaskPredictions(split.task, split.ids, preds, labels, correct)


def score(predictions: Mapping[str, TaskPredictions]) -> dict[str, float]:
    """sst_acc, para_acc, sts_corr, overall and mean_score from labeled predictions."""
    missing = [task for task in ("sst", "para", "sts") if task not in predictions]
    if missing:
        raise ValueError(
            f"scoring needs predictions for 'sst', 'para' and 'sts', but {missing} are missing"
        )
    for task in ("sst", "para", "sts"):
        if predictions[task].labels is None:
            raise ValueError(f"split of task {task!r} has no labels to score against")
    values = task_scores(predictions)
    return metrics.summary(values["sst_acc"], values["para_acc"], values["sts_corr"])


TASK_METRICS = {"sst": "sst_acc", "para": "para_acc", "sts": "sts_corr"}


def task_scores(predictions: Mapping[str, TaskPredictions]) -> dict[str, float]:
    """Accuracy (sst, para) or Pearson (sts) of each main task whose predictions have labels."""
    out = {}
    for task, key in TASK_METRICS.items():
        p = predictions.get(task)
        if p is None or p.labels is None:
            continue
        fn = metrics.pearson if task == "sts" else metrics.accuracy
        out[key] = fn(p.predictions, p.labels)
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
