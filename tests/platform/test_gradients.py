"""SharedGradients: flat gradient buffers, per-task rows, sparse gradients, PCGrad into place."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtl_tune.platform.gradients import SharedGradients
from mtl_tune.platform.pcgrad import project_conflicting


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
    grads.combine_pcgrad(3, torch.Generator().manual_seed(5))
    expected = project_conflicting(list(expected_rows), torch.Generator().manual_seed(5))
    # the optimizer's .grad views now hold the PCGrad sum of the rows
    torch.testing.assert_close(grads.flat, expected)


def test_fewer_tasks_than_rows_use_the_first_rows() -> None:
    model = _Model()
    grads = SharedGradients(model.shared(), list(model.heads.parameters()), n_tasks=3)
    for task in range(2):
        grads.record(task, model.loss(task))
    grads.combine_pcgrad(2, torch.Generator().manual_seed(0))
    expected = project_conflicting(
        [_task_grad(model, 0), _task_grad(model, 1)], torch.Generator().manual_seed(0)
    )
    # a step with two of three tasks combines just those two rows
    torch.testing.assert_close(grads.flat, expected)
