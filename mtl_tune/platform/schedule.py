"""The learning-rate schedule of a run (`lr_schedule`, `warmup_ratio`), from torch's schedulers.

A linear warmup from `lr / (warmup + 1)` up to `lr` over the first `warmup_ratio` of the run's
optimizer steps, then `constant`, or a `linear` or `cosine` decay to 0 at the last step. The
scheduler is stepped once per optimizer step; its state goes into checkpoints, so a resumed
run continues the schedule where it stopped, at this run's rates (`load_keeping_rates`).
"""

from __future__ import annotations

from typing import Any

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


def load_keeping_rates(
    optimizer: torch.optim.Optimizer, scheduler: LRScheduler | None,
    optimizer_state: dict[str, Any], scheduler_state: dict[str, Any] | None,
) -> None:
    """Loads an optimizer's and its scheduler's saved state, keeping the rates this run was
    built with: each group's learning rate and weight decay. The schedule goes on from the step
    it reached, scaled to the new base rate (a trial that continues another's checkpoint with a
    mutated `lr`, population-based training); with the same rates nothing changes.

    torch restores the saved groups' `lr`, `initial_lr` and `weight_decay`, and the scheduler
    its `base_lrs`: each is put back to this run's after the load."""
    fresh = [(group["initial_lr"], group["weight_decay"]) for group in optimizer.param_groups]
    optimizer.load_state_dict(optimizer_state)
    if scheduler is not None and scheduler_state is not None:
        scheduler.load_state_dict(scheduler_state)
    for group, (initial, decay) in zip(optimizer.param_groups, fresh, strict=True):
        group["lr"] *= initial / group.get("initial_lr", initial)  # the same step, a new base
        group["initial_lr"], group["weight_decay"] = initial, decay
    if scheduler is not None:
        rates = [group["lr"] for group in optimizer.param_groups]
        for part in (scheduler, *getattr(scheduler, "_schedulers", ())):
            part.base_lrs, part._last_lr = [initial for initial, _ in fresh], list(rates)
