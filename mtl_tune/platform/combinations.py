"""How one step's task losses become the shared gradient: the `combine` config key.

- `sum`: the gradient of the summed losses.
- `pcgrad`: gradient surgery (Yu et al. 2020) on the (T, P) matrix of task gradients.
- `cagrad`: conflict-averse gradient descent (Liu et al. 2021) on the same matrix.
- `uncertainty`: homoscedastic uncertainty weighting (Kendall, Gal and Cipolla 2018): task t's
  loss enters as `exp(-s_t) L_t + s_t / 2` (classification) or `exp(-s_t) L_t / 2 + s_t / 2`
  (regression), with `s_t = log sigma_t^2` learned by the model's optimizer.
- `famo`: fast adaptive multitask optimisation (Liu et al. 2023): the step follows
  `sum_t z_t grad log L_t / sum_t (z_t / L_t)` with `z = softmax(xi)`, and after the step the
  logits `xi` move (Adam, `famo_lr`, weight decay `famo_decay`) toward the tasks whose loss
  fell least, measured by the same batches' losses re-computed after the step.

The training loop asks a combination for each task's `objective`, differentiates it into one
row per task (`rows`) or into the running sum, then calls `combine` once per step and
`after_step` with the step's losses after the update when `needs_new_losses`. A row
combination (`RowCombination`: PCGrad, CAGrad) only says how to weight the rows: its
`coefficients` reads the rows' Gram matrix and returns one weight per task, which
`SharedGradients.combine` turns into the step's gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtl_tune.platform.cagrad import cagrad_coefficients
from mtl_tune.platform.config import COMBINES, check_choice
from mtl_tune.platform.gradients import SharedGradients
from mtl_tune.platform.pcgrad import projection_coefficients
from mtl_tune.platform.tasks import TASKS

# the log-variances' own learning rate: at BERT's (1e-5) they would barely move in a run
LOG_VARIANCE_LR = 1e-2
_FAMO_EPS = 1e-8


class Combination:
    """`sum`: every task's loss as it is, summed into one gradient."""

    rows = False  # whether each task's gradient is kept in its own row (PCGrad's matrix)
    needs_new_losses = False  # whether `after_step` wants the step's losses after the update

    def __init__(self, tasks: Sequence[str], device: torch.device) -> None:
        self.tasks = list(tasks)
        self.device = device

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups of learned weights, trained with the model's optimizer."""
        return []

    def begin_step(self, tasks: Sequence[str]) -> None:
        """Called before the step's first task."""

    def objective(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        """What is differentiated for `task`, given its loss."""
        return loss

    def combine(
        self, grads: SharedGradients, tasks: Sequence[str], generator: torch.Generator
    ) -> None:
        """Turns the recorded rows (or the summed gradient) into the step's gradient."""

    def after_step(self, tasks: Sequence[str], new_losses: Sequence[torch.Tensor]) -> None:
        """Called after the optimizer step with the step's losses re-computed (if asked for)."""

    def task_weights(self) -> dict[str, float]:
        """Each task's current weight, for the epoch's metrics (reads the device)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` returned."""


class RowCombination(Combination):
    """A combination of the step's task gradients, one recorded row each: `coefficients @ rows`."""

    rows = True

    def coefficients(
        self, gram: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The (T,) weights of the rows, from their (T, T) Gram matrix, on its device."""
        raise NotImplementedError

    def combine(
        self, grads: SharedGradients, tasks: Sequence[str], generator: torch.Generator
    ) -> None:
        grads.combine(self.coefficients(grads.gram(len(tasks)), generator))


class PCGrad(RowCombination):
    def coefficients(
        self, gram: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        # the sum of the projected gradients: sum_i C[i] @ G = C.sum(0) @ G
        return projection_coefficients(gram, generator).sum(dim=0)


class CAGrad(RowCombination):
    def __init__(self, tasks: Sequence[str], device: torch.device, c: float) -> None:
        super().__init__(tasks, device)
        self.c = c

    def coefficients(
        self, gram: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return cagrad_coefficients(gram, self.c)


class Uncertainty(Combination):
    """Args: regression: Per task, whether its loss is a squared error (a Gaussian likelihood)."""

    def __init__(
        self, tasks: Sequence[str], device: torch.device, regression: Sequence[bool]
    ) -> None:
        super().__init__(tasks, device)
        self.log_variances = nn.Parameter(torch.zeros(len(self.tasks), device=device))
        # Kendall et al.: 1/sigma^2 for a likelihood of class probabilities, 1/(2 sigma^2) for
        # a Gaussian one
        self.factors = [0.5 if r else 1.0 for r in regression]

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [self.log_variances], "lr": LOG_VARIANCE_LR, "weight_decay": 0.0}]

    def objective(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        i = self.tasks.index(task)
        s = self.log_variances[i]
        return self.factors[i] * torch.exp(-s) * loss + 0.5 * s

    def task_weights(self) -> dict[str, float]:
        precisions = torch.exp(-self.log_variances.detach()).tolist()
        return {t: f * p for t, f, p in zip(self.tasks, self.factors, precisions, strict=True)}

    def state_dict(self) -> dict[str, Any]:
        return {"log_variances": self.log_variances.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_variances.copy_(state["log_variances"])


class FAMO(Combination):
    needs_new_losses = True

    def __init__(
        self, tasks: Sequence[str], device: torch.device, lr: float, decay: float
    ) -> None:
        super().__init__(tasks, device)
        self.logits = torch.zeros(len(self.tasks), device=device, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.logits], lr=lr, weight_decay=decay)
        self._index = torch.arange(0)
        self._weights = torch.zeros(0)
        self._losses: list[torch.Tensor] = []

    def begin_step(self, tasks: Sequence[str]) -> None:
        # non_blocking: `torch.tensor(rows, device=cuda)` would wait for the card every step
        rows = torch.tensor([self.tasks.index(t) for t in tasks])
        self._index = rows.to(self.device, non_blocking=True)
        self._weights = F.softmax(self.logits.detach()[self._index], dim=0)
        self._losses = []

    def objective(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        self._losses.append(loss.detach())
        return self._weights[len(self._losses) - 1] * torch.log(loss + _FAMO_EPS)

    def combine(
        self, grads: SharedGradients, tasks: Sequence[str], generator: torch.Generator
    ) -> None:
        losses = torch.stack(self._losses) + _FAMO_EPS
        grads.scale(1.0 / (self._weights / losses).sum())

    def after_step(self, tasks: Sequence[str], new_losses: Sequence[torch.Tensor]) -> None:
        before = torch.log(torch.stack(self._losses) + _FAMO_EPS)
        after = torch.log(torch.stack([x.detach().float() for x in new_losses]) + _FAMO_EPS)
        decrease = before - after
        z = self._weights
        grad = torch.zeros_like(self.logits)
        # the gradient of z . decrease through the softmax, for the step's tasks
        grad[self._index] = z * (decrease - (z * decrease).sum())
        self.logits.grad = grad
        self.optimizer.step()

    def task_weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, F.softmax(self.logits.detach(), dim=0).tolist(), strict=True))

    def state_dict(self) -> dict[str, Any]:
        return {"logits": self.logits.detach().cpu(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        rate = self.optimizer.param_groups[0]["lr"]  # this run's `famo_lr`, not the saved one
        self.optimizer.load_state_dict(state["optimizer"])
        self.optimizer.param_groups[0]["lr"] = rate


def build_combination(
    name: str,
    tasks: Sequence[str],
    device: torch.device,
    cagrad_c: float = 0.5,
    famo_lr: float = 0.025,
    famo_decay: float = 0.01,
) -> Combination:
    """The combination `name` (one of `config.COMBINES`) over `tasks`."""
    check_choice("combine", name, COMBINES)
    if name == "pcgrad":
        return PCGrad(tasks, device)
    if name == "cagrad":
        return CAGrad(tasks, device, cagrad_c)
    if name == "uncertainty":
        return Uncertainty(tasks, device, [TASKS[t].num_classes == 0 for t in tasks])
    if name == "famo":
        return FAMO(tasks, device, famo_lr, famo_decay)
    return Combination(tasks, device)
