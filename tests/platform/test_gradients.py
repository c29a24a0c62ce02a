"""SharedGradients: flat gradient buffers, per-task rows, sparse gradients, combined rows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtl_tune.platform.combinations import PCGrad
from mtl_tune.platform.gradients import GRAM_CHUNK, SharedGradients
from mtl_tune.platform.pcgrad import projection_coefficients

CPU = torch.device("cpu")


class _Model(nn.Module):
    """A shared embedding + linear trunk (one parameter unused) and one head per task."""

    def __init__(self, sparse: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(10, 4, sparse=sparse)
        self.trunk = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 4)
        self.heads = nn.ModuleList(nn.Linear(4, 1) for _ in range(3))

    def loss(self, task: int) -> torch.Tensor:
        ids = torch.tensor([[task, task + 1, 7]])
        h = torch.tanh(self.trunk(self.embed(ids).mean(dim=1)))
        return (self.heads[task](h) - task).pow(2).sum()

    def shared(self) -> list[nn.Parameter]:
        return [*self.embed.parameters(), *self.trunk.parameters(), *self.unused.parameters()]


def _pcgrad_of(rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The PCGrad sum of the rows of `rows`, computed apart from any `SharedGradients`."""
    return projection_coefficients(rows @ rows.T, generator).sum(dim=0) @ rows


def _pcgrad_into(grads: SharedGradients, n_tasks: int, generator: torch.Generator) -> None:
    tasks = [f"task{i}" for i in range(n_tasks)]
    PCGrad(tasks, CPU).combine(grads, tasks, generator)


def _task_grad(model: _Model, task: int) -> torch.Tensor:
    grads = torch.autograd.grad(model.loss(task), model.shared(), allow_unused=True)
    return torch.cat([
        (torch.zeros_like(p) if g is None else g.to_dense()).reshape(-1)
        for g, p in zip(grads, model.shared(), strict=True)
    ])


@pytest.mark.parametrize("sparse", [False, True])
def test_add_accumulates_the_summed_gradient_in_place(sparse: bool) -> None:
    model = _Model(sparse)
    grads = SharedGradients(model.shared(), list(model.heads.parameters()))
    storage = grads.flat.data_ptr()
    for task in range(3):
        grads.add(model.loss(task))
    expected = sum(_task_grad(model, t) for t in range(3))
    # the shared gradient is the sum of the task gradients (a sparse embedding one included)
    torch.testing.assert_close(grads.flat, expected)
    # each parameter's .grad is a view of that one buffer, which was never reallocated
    assert grads.flat.data_ptr() == storage
    assert model.trunk.weight.grad is not None
    assert model.trunk.weight.grad.data_ptr() == storage + 10 * 4 * 4  # after the (10, 4) embedding
    # a parameter no task reaches keeps a zero gradient
    assert model.unused.weight.grad is not None and not model.unused.weight.grad.any()
    # each head got its own task's gradient only
    for task, head in enumerate(model.heads):
        (own,) = torch.autograd.grad(model.loss(task), [head.weight])
        assert head.weight.grad is not None
        torch.testing.assert_close(head.weight.grad, own)


def test_zero_keeps_the_views_and_drops_head_gradients() -> None:
    model = _Model()
    grads = SharedGradients(model.shared(), list(model.heads.parameters()))
    grads.add(model.loss(0))
    grads.zero()
    # zeroing empties the buffer in place: .grad is still the same view, now all zero
    assert model.trunk.weight.grad is not None and not model.trunk.weight.grad.any()
    assert model.trunk.weight.grad.data_ptr() == grads.flat.data_ptr() + 10 * 4 * 4
    # the heads' gradients are dropped, as optimizer.zero_grad(set_to_none=True) would
    assert all(p.grad is None for p in model.heads.parameters())


@pytest.mark.parametrize("sparse", [False, True])
def test_record_writes_rows_and_pcgrad_combines_them(sparse: bool) -> None:
    model = _Model(sparse)
    grads = SharedGradients(model.shared(), list(model.heads.parameters()), n_tasks=3)
    for task in range(3):
        grads.record(task, model.loss(task))
    assert grads.rows is not None
    expected_rows = torch.stack([_task_grad(model, t) for t in range(3)])
    # each row holds one task's gradient of the shared parameters
    torch.testing.assert_close(grads.rows, expected_rows)
    _pcgrad_into(grads, 3, torch.Generator().manual_seed(5))
    expected = _pcgrad_of(expected_rows, torch.Generator().manual_seed(5))
    # the optimizer's .grad views now hold the PCGrad sum of the rows
    torch.testing.assert_close(grads.flat, expected)


def test_fewer_tasks_than_rows_use_the_first_rows() -> None:
    model = _Model()
    grads = SharedGradients(model.shared(), list(model.heads.parameters()), n_tasks=3)
    for task in range(2):
        grads.record(task, model.loss(task))
    _pcgrad_into(grads, 2, torch.Generator().manual_seed(0))
    expected = _pcgrad_of(
        torch.stack([_task_grad(model, 0), _task_grad(model, 1)]), torch.Generator().manual_seed(0)
    )
    # a step with two of three tasks combines just those two rows
    torch.testing.assert_close(grads.flat, expected)


def test_combine_writes_the_coefficients_times_the_first_rows() -> None:
    model = _Model()
    grads = SharedGradients(model.shared(), list(model.heads.parameters()), n_tasks=3)
    for task in range(3):
        grads.record(task, model.loss(task))
    rows = torch.stack([_task_grad(model, t) for t in range(3)])
    storage = grads.flat.data_ptr()
    # the Gram matrix is that of the first n rows ...
    torch.testing.assert_close(grads.gram(2), rows[:2] @ rows[:2].T)
    # ... and combine() writes coefficients @ rows over as many rows as there are coefficients,
    # in place, into the buffer the optimizer reads
    grads.combine(torch.tensor([0.5, -2.0]))
    torch.testing.assert_close(grads.flat, 0.5 * rows[0] - 2.0 * rows[1])
    assert grads.flat.data_ptr() == storage


@pytest.mark.parametrize("width", [5, GRAM_CHUNK, 3 * GRAM_CHUNK + 7])
def test_chunked_gram_matrix_equals_the_product(width: int) -> None:
    torch.manual_seed(width)
    rows = torch.randn(3, width)
    param = nn.Parameter(torch.zeros(width))
    grads = SharedGradients([param], n_tasks=3)
    for row in range(3):
        grads.record(row, (param * rows[row]).sum())
    expected = (rows.double() @ rows.double().T).float()
    # partial products over column chunks (plus the remainder) add up to G @ G.T
    torch.testing.assert_close(grads.gram(3), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("coefficients", "match"),
    [
        (torch.zeros(0), r"1-D tensor of 1 to 3 weights, but got shape \(0,\)$"),
        (torch.zeros(4), r"1-D tensor of 1 to 3 weights, but got shape \(4,\)$"),
        (torch.zeros(2, 2), r"1-D tensor of 1 to 3 weights, but got shape \(2, 2\)$"),
        (torch.zeros(()), r"1-D tensor of 1 to 3 weights, but got shape \(\)$"),
    ],
)
def test_combine_rejects_coefficients_that_do_not_fit_the_rows(
    coefficients: torch.Tensor, match: str
) -> None:
    grads = SharedGradients(_Model().shared(), n_tasks=3)
    # Bad input is refused with the rule and the value received.
    with pytest.raises(ValueError, match=r"coefficients must be a " + match):
        grads.combine(coefficients)
