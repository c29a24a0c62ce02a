"""CAGrad, conflict-averse gradient descent (Liu et al. 2021), on a (T, P) matrix of task gradients.

With `g0` the average task gradient and `c` the radius, CAGrad takes the direction
`d = g0 + (c ||g0|| / ||g_w||) g_w`, where `g_w = sum_i w_i g_i` and `w` minimises
`g_w . g0 + c ||g0|| ||g_w||` over the simplex (the dual of the paper's problem: maximise the
worst task's improvement within a ball of radius `c ||g0||` around `g0`). Like the authors' code,
the direction is divided by `1 + c**2`. Everything is a function of the (T, T) Gram matrix, so the
direction is a combination `coef @ G` of the original rows; the small dual problem is solved by
scipy (SLSQP, as the authors do), which reads the Gram matrix on the host once per step.

We return it on the scale of the summed gradient (`T` times the paper's), like `sum` and
`pcgrad`, so one learning rate means the same for all three; `c = 0` is exactly `sum`.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

_EPS = 1e-8


def dual_weights(gram: np.ndarray, c: float) -> np.ndarray:
    """The simplex weights `w` minimising `w.G g0 + c ||g0|| ||G.T w||` (float64, (T,))."""
    n_tasks = gram.shape[0]
    start = np.full(n_tasks, 1.0 / n_tasks)
    toward_g0 = gram @ start  # <g_i, g0>
    radius = c * np.sqrt(max(start @ gram @ start, 0.0) + _EPS)

    def objective(w: np.ndarray) -> float:
        return float(w @ toward_g0 + radius * np.sqrt(max(w @ gram @ w, 0.0) + _EPS))

    result = minimize(
        objective,
        start,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n_tasks,
        constraints={"type": "eq", "fun": lambda w: w.sum() - 1.0},
        options={"ftol": 1e-12, "maxiter": 200},
    )
    weights: np.ndarray = np.clip(result.x, 0.0, 1.0)
    return weights / weights.sum()


def cagrad_coefficients(gram: torch.Tensor, c: float) -> torch.Tensor:
    """The CAGrad direction as a combination of the task gradients, on the sum's scale.

    Args:
        gram: The (T, T) Gram matrix `G @ G.T` of the task gradients.
        c: The radius of the conflict-averse ball, `>= 0`.

    Returns:
        A (T,) tensor `coef` on the Gram matrix's device and dtype with direction `coef @ G`.
    """
    n_tasks = gram.shape[0]
    if c == 0:
        return torch.ones(n_tasks, dtype=gram.dtype, device=gram.device)
    g = gram.detach().double().cpu().numpy()
    w = dual_weights(g, c)
    mean = np.full(n_tasks, 1.0 / n_tasks)
    g0_norm = np.sqrt(max(mean @ g @ mean, 0.0) + _EPS)
    gw_norm = np.sqrt(max(w @ g @ w, 0.0) + _EPS)
    coef = (mean + c * g0_norm / gw_norm * w) / (1.0 + c**2) * n_tasks
    # non_blocking: the host has just waited for the Gram matrix; it need not wait again
    return torch.from_numpy(coef).to(gram.device, gram.dtype, non_blocking=True)
