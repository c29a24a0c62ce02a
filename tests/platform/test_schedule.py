"""The learning-rate schedules: warmup, then constant, linear or cosine decay to zero."""

import math

import pytest
import torch

from mtl_tune.exceptions import ConfigError
from mtl_tune.platform.schedule import build_scheduler, warmup_steps


def _lrs(kind: str, warmup_ratio: float, total: int) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([p], lr=1.0)
    scheduler = build_scheduler(optimizer, kind, warmup_ratio, total)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_decays_along_half_a_cosine() -> None:
    # no warmup: lr_k = (1 + cos(pi k / 8)) / 2 over 8 steps
    expected = [(1 + math.cos(math.pi * k / 8)) / 2 for k in range(8)]
    assert _lrs("cosine", 0.0, 8) == pytest.approx(expected)


def test_constant_after_warmup() -> None:
    # 25% of 8 steps = 2 warmup steps from lr/3, then the constant lr
    assert _lrs("constant", 0.25, 8) == pytest.approx([1 / 3, 2 / 3] + [1.0] * 6)


def test_warmup_rounds_and_leaves_a_step() -> None:
    assert warmup_steps(0.1, 125) == 12
    assert warmup_steps(0.5, 1) == 0  # a one-step run has no room for a warmup


def test_unknown_schedule_is_named() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ConfigError, match=r"lr_schedule must be one of \('constant', 'linear', "
                       r"'cosine'\), but got 'step'"):
        build_scheduler(optimizer, "step", 0.0, 10)
