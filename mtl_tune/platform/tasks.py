"""The task table: everything that differs between the tasks, one row per task.

Files and columns, the label's kind and range, the head that predicts the task, its loss, how
a head's output becomes a prediction, its metric and its leaderboard file header. The model,
the training loop, evaluation, prediction files and reports read this table instead of testing
task names.

Torch is imported by the losses and predictions when they run, not with the table: commands
that only read the table (`data check`, listing studies) never load it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mtl_tune.exceptions import DataError
from mtl_tune.platform import metrics

if TYPE_CHECKING:
    import torch

    Loss = Callable[[torch.Tensor, torch.Tensor, str], torch.Tensor]  # output, labels, sts_head
    Prediction = Callable[[torch.Tensor, str], torch.Tensor]  # (output, sts_head) -> label


def _class_loss(out: torch.Tensor, labels: torch.Tensor, sts_head: str) -> torch.Tensor:
    import torch.nn.functional as F

    return F.cross_entropy(out, labels)


def _logit_loss(out: torch.Tensor, labels: torch.Tensor, sts_head: str) -> torch.Tensor:
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(out, labels.float())


def _similarity_loss(out: torch.Tensor, labels: torch.Tensor, sts_head: str) -> torch.Tensor:
    import torch.nn.functional as F

    from mtl_tune.platform.heads import similarity_target

    return F.mse_loss(out, similarity_target(sts_head, labels))


def _argmax(out: torch.Tensor, sts_head: str) -> torch.Tensor:
    return out.argmax(dim=-1).float()


def _positive(out: torch.Tensor, sts_head: str) -> torch.Tensor:
    return (out > 0).float()


@dataclass(frozen=True)
class TaskSpec:
    name: str
    prefix: str  # file name prefix in the data folder
    text_columns: tuple[str, ...]
    label_column: str
    num_classes: int  # 0 for the regression task (STS)
    label_range: tuple[float, float]
    head: str  # the head that predicts it: "sentiment", "paraphrase" or "similarity"
    loss: Loss
    predict: Prediction  # a head's output -> a label (class index, 0/1, or 0..5 similarity)
    metric: str  # the dev metric's key
    score: Callable[[np.ndarray, np.ndarray], float]  # (predictions, labels) -> the metric
    output_header: str  # the course's leaderboard file header

    @property
    def pair(self) -> bool:
        return len(self.text_columns) == 2


def _sentiment(name: str, prefix: str, classes: int) -> TaskSpec:
    return TaskSpec(name, prefix, ("sentence",), "sentiment", classes, (0, classes - 1),
                    "sentiment", _class_loss, _argmax, f"{name}_acc", metrics.accuracy,
                    "Predicted_Sentiment")


def _similarity(out: torch.Tensor, sts_head: str) -> torch.Tensor:
    from mtl_tune.platform.heads import similarity_to_labels

    return similarity_to_labels(sts_head, out)


TASKS: dict[str, TaskSpec] = {
    "sst": _sentiment("sst", "ids-sst", 5),
    "para": TaskSpec("para", "quora", ("sentence1", "sentence2"), "is_duplicate", 2, (0, 1),
                     "paraphrase", _logit_loss, _positive, "para_acc", metrics.accuracy,
                     "Predicted_Is_Paraphrase"),
    "sts": TaskSpec("sts", "sts", ("sentence1", "sentence2"), "similarity", 0, (0.0, 5.0),
                    "similarity", _similarity_loss, _similarity, "sts_corr", metrics.pearson,
                    "Predicted_Similiary"),  # sic: the course's spelling, which its grader expects
    "cfimdb": _sentiment("cfimdb", "ids-cfimdb", 2),
}
MAIN_TASKS = ("sst", "para", "sts")  # the three tasks every run trains and scores


def task_spec(task: str) -> TaskSpec:
    if task not in TASKS:
        raise DataError(f"task must be one of {tuple(TASKS)}, but got {task!r}")
    return TASKS[task]
