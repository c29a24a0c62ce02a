"""LossLog: device-side loss sums, and the first non-finite loss named at the next read."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_tune.exceptions import TrainingError
from mtl_tune.platform.loss_log import LossLog


def _log() -> LossLog:
    return LossLog(["sst", "para", "sts"], torch.device("cpu"), epoch=3, lr=2e-5)


def test_means_per_task() -> None:
    log = _log()
    for step, (task, value) in enumerate([("sst", 1.0), ("para", 4.0), ("sst", 2.0)], start=1):
        log.add(task, torch.tensor(value), step)
    log.check()
    # each task's mean over its own batches; a task without batches is absent
    assert log.means() == {"sst": 1.5, "para": 4.0}


def test_first_non_finite_loss_is_named_even_after_later_ones() -> None:
    log = _log()
    log.add("sst", torch.tensor(0.5), 1)
    log.add("para", torch.tensor(math.nan), 2)
    log.add("sts", torch.tensor(math.inf), 2)
    log.add("sst", torch.tensor(math.nan), 3)
    # the read names the first bad loss: its value, task, epoch and step, and how to fix it
    with pytest.raises(
        TrainingError,
        match=r"non-finite loss nan on task 'para' at epoch 3, step 2; lower lr \(now 2e-05\)",
    ):
        log.check()


def test_finite_losses_pass_the_check() -> None:
    log = _log()
    log.add("sts", torch.tensor(1e30), 7)
    # large but finite values are not an error
    log.check()
    assert log.means() == {"sts": pytest.approx(1e30)}


def test_curve_points_are_each_windows_task_means_read_at_once() -> None:
    log = _log()
    losses = [("sst", 1.0), ("para", 4.0), ("sst", 3.0), ("sts", 0.5), ("sst", 5.0)]
    for step, (task, value) in enumerate(losses, start=1):
        log.add(task, torch.tensor(value), step)
        if step in (3, 5):
            log.mark(step)
    log.mark(5)  # a second mark at the same step adds no empty window
    # steps 1-3: sst (1+3)/2 and para 4; steps 4-5: sts 0.5 and sst 5; a task absent from a
    # window has no value there
    assert log.curve() == [(3, {"sst": 2.0, "para": 4.0}), (5, {"sst": 5.0, "sts": 0.5})]


def test_no_marks_no_curve() -> None:
    log = _log()
    log.add("sst", torch.tensor(1.0), 1)
    assert log.curve() == []
