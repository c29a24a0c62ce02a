"""The learning-rate schedule of a run (`lr_schedule`, `warmup_ratio`), from torch's schedulers.

A linear warmup from `lr / (warmup + 1)` up to `lr` over the first `warmup_ratio` of the run's
optimizer steps, then `constant`, or a `linear` or `cosine` decay to 0 at the last step. The
scheduler is stepped once per optimizer step; its state goes into checkpoints, so a resumed
run continues the schedule where it stopped.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    SequentialLR,
)

from mtl_tune.platform.config import LR_SCHEDULES, check_choice


def warmup_steps(warmup_ratio: float, total_steps: int) -> int:
    """Optimizer steps of the warmup: `warmup_ratio` of the run, rounded, at most all but one."""
    return min(round(warmup_ratio * total_steps), max(total_steps - 1, 0))


def build_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, warmup_ratio: float, total_steps: int
) -> LRScheduler:
    """The scheduler of `kind` (one of `LR_SCHEDULES`) for a run of `total_steps` steps."""
    check_choice("lr_schedule", kind, LR_SCHEDULES)
    warmup = warmup_steps(warmup_ratio, total_steps)
    rest = max(total_steps - warmup, 1)
    main: LRScheduler
    if kind == "constant":
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif kind == "linear":
        main = LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=rest)
    else:
        main = CosineAnnealingLR(optimizer, T_max=rest, eta_min=0.0)
    if warmup == 0:
        return main
    ramp = LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])
