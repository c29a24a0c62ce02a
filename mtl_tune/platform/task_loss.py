"""A task batch's head output and loss, as the training loop and its combinations take them."""

from __future__ import annotations

import torch

from mtl_tune.platform.batches import Batch
from mtl_tune.platform.model import MultitaskBERT
from mtl_tune.platform.tasks import TASKS


def task_output(model: MultitaskBERT, batch: Batch) -> torch.Tensor:
    return model.forward_task(batch.task, batch.segments).float()


def task_loss(model: MultitaskBERT, batch: Batch, out: torch.Tensor | None = None) -> torch.Tensor:
    """The task's loss on `batch` (from the head output `out` when it is already computed)."""
    assert batch.labels is not None, "training batches carry labels"
    out = task_output(model, batch) if out is None else out
    return TASKS[batch.task].loss(out, batch.labels, model.heads.sts_head)
