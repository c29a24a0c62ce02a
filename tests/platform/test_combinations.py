"""The loss combinations against their papers' definitions, on small problems with known answers."""

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from mtl_tune.exceptions import ConfigError
from mtl_tune.platform.cagrad import cagrad_coefficients
from mtl_tune.platform.combinations import (
    FAMO,
    RowCombination,
    Uncertainty,
    build_combination,
)
from mtl_tune.platform.gradients import SharedGradients
from mtl_tune.platform.pcgrad import projection_coefficients

CPU = torch.device("cpu")


def _two_task_weight(gram: np.ndarray, c: float) -> float:
    """CAGrad's dual for two tasks in closed form: the x in [0, 1] of w = (x, 1 - x).

    With g_w = x g1 + (1 - x) g2, F(x) = b(x) + k sqrt(q(x)), b linear, q quadratic; F'(x) = 0
    gives b' sqrt(q) = -k q' / 2, i.e. 4 b'^2 q = k^2 q'^2 with the sign condition b' q' < 0.
    """
    g11, g12, g22 = gram[0, 0], gram[0, 1], gram[1, 1]
    k = c * math.sqrt((g11 + 2 * g12 + g22) / 4)
    slope = ((g11 + g12) - (g12 + g22)) / 2  # b(x) = x <g1, g0> + (1 - x) <g2, g0>
    qa, qb, qc = g11 - 2 * g12 + g22, 2 * (g12 - g22), g22  # q(x) = qa x^2 + qb x + qc
    # 4 slope^2 (qa x^2 + qb x + qc) = k^2 (2 qa x + qb)^2
    coeffs = [4 * slope**2 * qa - 4 * k**2 * qa**2, 4 * slope**2 * qb - 4 * k**2 * qa * qb,
              4 * slope**2 * qc - k**2 * qb**2]
    candidates = [0.0, 1.0] + [r.real for r in np.roots(coeffs) if abs(r.imag) < 1e-12]

    def f(x: float) -> float:
        return x * (g11 + g12) / 2 + (1 - x) * (g12 + g22) / 2 + k * math.sqrt(
            qa * x * x + qb * x + qc
        )

    return min((x for x in candidates if 0 <= x <= 1), key=f)


@pytest.mark.parametrize("c", [0.2, 0.5, 0.9])
def test_cagrad_matches_the_two_task_closed_form(c: float) -> None:
    g = torch.tensor([[1.0, 0.0, 0.5], [-0.8, 0.6, 0.1]], dtype=torch.float64)  # conflicting
    assert float(g[0] @ g[1]) < 0
    gram = g @ g.T
    x = _two_task_weight(gram.numpy(), c)
    w = torch.tensor([x, 1 - x], dtype=torch.float64)
    g0 = g.mean(dim=0)
    gw = w @ g
    # the paper's direction d = g0 + c ||g0|| / ||g_w|| g_w, divided by 1 + c^2, times T
    expected = 2 * (g0 + c * g0.norm() / gw.norm() * gw) / (1 + c**2)
    got = cagrad_coefficients(gram, c) @ g
    assert torch.allclose(got, expected, atol=1e-5)
    # conflict-averse: the worst task's first-order improvement beats the plain sum's
    total = g.sum(dim=0)
    assert min(float(g[0] @ got), float(g[1] @ got)) > min(
        float(g[0] @ total), float(g[1] @ total)
    )


def test_cagrad_with_no_radius_is_the_sum() -> None:
    gram = torch.tensor([[2.0, -1.0], [-1.0, 3.0]])
    assert torch.equal(cagrad_coefficients(gram, 0.0), torch.ones(2))


def _pcgrad_coefficients(gram: torch.Tensor) -> torch.Tensor:
    return projection_coefficients(gram, torch.Generator().manual_seed(4)).sum(dim=0)


def _cagrad_coefficients(gram: torch.Tensor) -> torch.Tensor:
    return cagrad_coefficients(gram, 0.5)


@pytest.mark.parametrize(
    ("name", "expected_coefficients"),
    [("pcgrad", _pcgrad_coefficients), ("cagrad", _cagrad_coefficients)],
)
def test_row_combinations_hand_their_coefficients_to_shared_gradients(
    name: str, expected_coefficients: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    # three tasks over one shared parameter, with conflicting gradients g_t (the loss's gradient)
    g = torch.tensor([[1.0, 0.0, 0.5], [-0.8, 0.6, 0.1], [0.2, -1.0, 0.3]])
    p = torch.nn.Parameter(torch.zeros(3))
    grads = SharedGradients([p], n_tasks=3)
    tasks = ["a", "b", "c"]
    combination = build_combination(name, tasks, CPU, cagrad_c=0.5)
    assert isinstance(combination, RowCombination) and combination.rows
    for row in range(3):
        grads.record(row, (p * g[row]).sum())
    combination.combine(grads, tasks, torch.Generator().manual_seed(4))
    coefficients = expected_coefficients(g @ g.T)
    # the step's gradient is the combination's coefficients (from the Gram matrix) @ the rows
    assert not torch.allclose(coefficients, torch.ones(3))  # not just the plain sum
    torch.testing.assert_close(p.grad, coefficients @ g)


def test_uncertainty_variances_track_the_tasks_noise() -> None:
    # two regression tasks whose targets have noise std 1 and 3: at the optimum of
    # exp(-s) L / 2 + s / 2, exp(s) = L, the tasks' squared errors (noise variances 1 and 9)
    torch.manual_seed(0)
    combination = Uncertainty(["quiet", "noisy"], CPU, regression=[True, True])
    means = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([{"params": [means], "lr": 0.05},
                                  *combination.param_groups()])
    for _ in range(1500):
        targets = torch.stack([torch.randn(64) + 2.0, 3 * torch.randn(64) - 1.0])
        optimizer.zero_grad()
        total = sum(
            combination.objective(task, ((targets[i] - means[i]) ** 2).mean())
            for i, task in enumerate(combination.tasks)
        )
        total.backward()
        optimizer.step()
    variances = torch.exp(combination.log_variances.detach())
    assert float(variances[1] / variances[0]) == pytest.approx(9.0, rel=0.2)
    weights = combination.task_weights()  # the precision each loss is weighted with
    assert weights["quiet"] / weights["noisy"] == pytest.approx(9.0, rel=0.2)


def test_famo_step_is_the_normalised_log_loss_gradient() -> None:
    # d = sum_t z_t grad L_t / L_t / sum_t (z_t / L_t): with z uniform and L = (1, 4),
    # grad L_t = e_t gives d = (1/2, 1/8) / (1/2 + 1/8)
    p = torch.nn.Parameter(torch.zeros(2))
    grads = SharedGradients([p])
    famo = FAMO(["a", "b"], CPU, lr=0.025, decay=0.0)
    famo.begin_step(["a", "b"])
    for task, (i, value) in zip(["a", "b"], [(0, 1.0), (1, 4.0)], strict=True):
        loss = value + p[i]  # L_t = value at p = 0, with gradient e_i
        grads.add(famo.objective(task, loss))
    famo.combine(grads, ["a", "b"], torch.Generator())
    expected = torch.tensor([0.5, 0.125]) / 0.625
    assert torch.allclose(p.grad, expected, atol=1e-6)


def test_famo_weights_move_toward_the_slowest_task() -> None:
    famo = FAMO(["fast", "slow"], CPU, lr=0.025, decay=0.0)
    losses = torch.tensor([2.0, 2.0])
    for _ in range(40):
        famo.begin_step(["fast", "slow"])
        for task, loss in zip(famo.tasks, losses, strict=True):
            famo.objective(task, loss)
        losses = losses * torch.tensor([0.9, 0.99])  # "fast" falls 10% a step, "slow" 1%
        famo.after_step(["fast", "slow"], list(losses))
    weights = famo.task_weights()
    assert weights["slow"] > 0.6 > 0.4 > weights["fast"]
    assert sum(weights.values()) == pytest.approx(1.0)


def test_famo_state_round_trips() -> None:
    famo = FAMO(["a", "b"], CPU, lr=0.1, decay=0.0)
    famo.begin_step(["a", "b"])
    famo.objective("a", torch.tensor(1.0))
    famo.objective("b", torch.tensor(1.0))
    famo.after_step(["a", "b"], [torch.tensor(0.5), torch.tensor(0.9)])
    copy = FAMO(["a", "b"], CPU, lr=0.1, decay=0.0)
    copy.load_state_dict(famo.state_dict())
    assert copy.task_weights() == famo.task_weights()
    assert copy.optimizer.state_dict()["state"][0]["step"] == 1


def test_unknown_combination_is_named() -> None:
    with pytest.raises(ConfigError, match=r"combine must be one of .*'famo'\), but got 'mgda'"):
        build_combination("mgda", ["sst"], CPU)


def test_famo_decay_pulls_the_logits_back_to_equal_weights() -> None:
    # with the same loss decrease on both tasks the gradient is 0: only the decay acts
    famo = FAMO(["a", "b"], CPU, lr=0.05, decay=0.5)
    with torch.no_grad():
        famo.logits.copy_(torch.tensor([1.0, -1.0]))
    for _ in range(100):
        famo.begin_step(["a", "b"])
        famo.objective("a", torch.tensor(1.0))
        famo.objective("b", torch.tensor(2.0))
        famo.after_step(["a", "b"], [torch.tensor(0.9), torch.tensor(1.8)])
    weights = famo.task_weights()
    # softmax(1, -1) starts the weights tanh(1) = 0.76 apart
    assert abs(weights["a"] - weights["b"]) < 0.1 < math.tanh(1.0)
