"""PCGrad against known answers, through the trainer's path: rows recorded in `SharedGradients`,
`projection_coefficients` of their Gram matrix, `SharedGradients.combine`."""

import copy
from collections.abc import Sequence

import pytest
import torch

from mtl_tune.platform.combinations import PCGrad
from mtl_tune.platform.gradients import SharedGradients
from mtl_tune.platform.pcgrad import projection_coefficients

CPU = torch.device("cpu")


def _vec(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _combine(
    grads: SharedGradients, n_tasks: int, generator: torch.Generator | None = None
) -> None:
    """The PCGrad combination of the first `n_tasks` recorded rows, as the trainer calls it."""
    tasks = [f"task{i}" for i in range(n_tasks)]
    PCGrad(tasks, CPU).combine(grads, tasks, generator or torch.Generator())


def _pcgrad(
    task_grads: Sequence[torch.Tensor], generator: torch.Generator | None = None
) -> torch.Tensor:
    """PCGrad of the given task gradients: each is recorded as the gradient of a loss of one
    shared parameter (`(param * g).sum()` has exactly `g` as its gradient), then combined."""
    param = torch.nn.Parameter(torch.zeros_like(task_grads[0]))
    grads = SharedGradients([param], n_tasks=max(len(task_grads), 2))
    for row, g in enumerate(task_grads):
        grads.record(row, (param * g).sum())
    _combine(grads, len(task_grads), generator)
    assert param.grad is not None and param.grad.data_ptr() == grads.flat.data_ptr()
    return param.grad.clone()


def test_two_conflicting_tasks_are_projected_and_summed() -> None:
    g1, g2 = _vec(1, 0), _vec(-1, 1)
    result = _pcgrad([g1, g2], generator=torch.Generator().manual_seed(0))
    # g1 -> [0.5, 0.5] and g2 -> [0, 1]; the result is their sum.
    torch.testing.assert_close(result, _vec(0.5, 1.5))


def test_projected_vector_is_orthogonal_to_the_gradient_it_conflicted_with() -> None:
    g1, g2 = _vec(3, -1, 2), _vec(-2, 1, 1)
    assert torch.dot(g1, g2) < 0
    rows = torch.stack([g1, g2])
    coef = projection_coefficients(rows @ rows.T, torch.Generator().manual_seed(0))
    projected = coef[0] @ rows
    # After surgery g1 has no component along g2 left.
    torch.testing.assert_close(torch.dot(projected, g2), torch.tensor(0.0))
    # ... and it is g1 minus its component along g2
    torch.testing.assert_close(projected, g1 - (torch.dot(g1, g2) / torch.dot(g2, g2)) * g2)


@pytest.mark.parametrize(
    ("reverse", "expected"),
    [
        # Order 0, 1, 2: g1 -> [0, 0], g2 -> [-0.5, 0.5], g3 -> [-0.5, -0.5].
        (False, (-1.0, 0.0)),
        # Order 2, 1, 0: g1 -> [0, 0], g2 -> [0, 1], g3 -> [0, -1].
        (True, (0.0, 0.0)),
    ],
)
def test_three_tasks_in_a_fixed_order(
    monkeypatch: pytest.MonkeyPatch, reverse: bool, expected: tuple[float, float]
) -> None:
    def fixed_order(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        order = torch.arange(n)
        return order.flip(0) if reverse else order

    monkeypatch.setattr(torch, "randperm", fixed_order)
    grads = [_vec(1, 0), _vec(-1, 1), _vec(-1, -1)]
    # Each task is projected off the others in the visiting order, then all are summed.
    torch.testing.assert_close(_pcgrad(grads), _vec(*expected))


def _sequential_pcgrad(grads: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """The textbook loop (and this package's first implementation), in float64."""
    total = torch.zeros_like(grads[0])
    for i, grad in enumerate(grads):
        order = torch.randperm(len(grads), generator=generator).tolist()
        projected = grad.clone()
        for j in order:
            if j == i:
                continue
            dot = torch.dot(projected, grads[j])
            if dot < 0 and torch.dot(grads[j], grads[j]) > 0:
                projected = projected - dot / torch.dot(grads[j], grads[j]) * grads[j]
        total += projected
    return total


def _random_grads(n_tasks: int, seed: int) -> list[torch.Tensor]:
    """Correlated random gradients, so that some pairs conflict and some do not."""
    torch.manual_seed(seed)
    base = torch.randn(64, dtype=torch.float64)
    return [base * torch.randn(()) + torch.randn(64, dtype=torch.float64) for _ in range(n_tasks)]


@pytest.mark.parametrize("n_tasks", [2, 3, 5])
@pytest.mark.parametrize("seed", range(4))
def test_gram_matrix_surgery_equals_the_sequential_loop(n_tasks: int, seed: int) -> None:
    grads = _random_grads(n_tasks, seed)
    expected = _sequential_pcgrad(grads, torch.Generator().manual_seed(seed))
    result = _pcgrad(grads, torch.Generator().manual_seed(seed))
    # the (T, T) formulation gives the loop's result, with the same visiting orders
    assert result.dtype == torch.float64
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)


def test_random_cases_exercise_surgery() -> None:
    cases = [(n, seed) for n in (2, 3, 5) for seed in range(4)]
    projected = 0
    for n, seed in cases:
        grads = _random_grads(n, seed)
        rows = torch.stack(grads)
        conflict = bool(((rows @ rows.T) < 0).any())
        result = _pcgrad(grads, torch.Generator().manual_seed(seed))
        changed = not torch.allclose(result, rows.sum(0), rtol=1e-12, atol=1e-12)
        # surgery changes the sum exactly when some pair of gradients conflicts
        assert changed == conflict, (n, seed)
        projected += changed
    # and most of the cases above projected, so the comparison above covers projections
    assert projected >= len(cases) // 2


@pytest.mark.parametrize(
    "grads",
    [
        [_vec(1, 0), _vec(0, 1)],
        [_vec(1, 2, 3), _vec(2, 0, 1), _vec(0, 1, 0)],
        [_vec(4, -1)],
        [_vec(0, 0), _vec(-1, 1)],
    ],
)
def test_non_conflicting_gradients_pass_unchanged(grads: list[torch.Tensor]) -> None:
    result = _pcgrad(grads, generator=torch.Generator().manual_seed(0))
    # With no negative pairwise dot product the result is the plain sum.
    torch.testing.assert_close(result, torch.stack(grads).sum(0))


def test_inputs_and_recorded_rows_are_not_modified() -> None:
    grads_in = [_vec(1, 0), _vec(-1, 1)]
    originals = [g.clone() for g in grads_in]
    param = torch.nn.Parameter(torch.zeros(2))
    grads = SharedGradients([param], n_tasks=2)
    for row, g in enumerate(grads_in):
        grads.record(row, (param * g).sum())
    _combine(grads, 2)
    # The caller's tensors keep their values ...
    for grad, original in zip(grads_in, originals, strict=True):
        torch.testing.assert_close(grad, original)
    # ... and so do the recorded rows: combining writes the shared gradient only.
    assert grads.rows is not None
    torch.testing.assert_close(grads.rows, torch.stack(originals))
    torch.testing.assert_close(grads.flat, _vec(0.5, 1.5))


def test_same_seed_gives_same_result() -> None:
    grads = [_vec(1, 0, 2), _vec(-1, 1, -1), _vec(-1, -1, 0.5)]
    first = _pcgrad(grads, generator=torch.Generator().manual_seed(7))
    second = _pcgrad(grads, generator=torch.Generator().manual_seed(7))
    # The visiting order only depends on the generator, so equal seeds give equal results.
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_combination_draws_one_order_per_task_from_the_generator() -> None:
    generator = torch.Generator().manual_seed(3)
    _pcgrad([_vec(1, 0, 2), _vec(-1, 1, -1), _vec(-1, -1, 0.5)], generator)
    reference = torch.Generator().manual_seed(3)
    for _ in range(3):
        torch.randperm(3, generator=reference)
    # the step consumed exactly one randperm per task, so later steps' orders are reproducible
    assert torch.equal(generator.get_state(), reference.get_state())


class _TwoHeadModel(torch.nn.Module):
    """A shared linear trunk with one linear head per task, all weights set by hand."""

    def __init__(self, head1: list[float], head2: list[float]) -> None:
        super().__init__()
        self.trunk = torch.nn.Linear(2, 2)
        self.head1 = torch.nn.Linear(2, 1)
        self.head2 = torch.nn.Linear(2, 1)
        with torch.no_grad():
            self.trunk.weight.copy_(torch.tensor([[0.5, -0.2], [0.1, 0.3]]))
            self.trunk.bias.copy_(torch.tensor([0.1, -0.1]))
            self.head1.weight.copy_(torch.tensor([head1]))
            self.head2.weight.copy_(torch.tensor([head2]))
            self.head1.bias.zero_()
            self.head2.bias.zero_()

    def losses(self) -> list[torch.Tensor]:
        h = self.trunk(torch.tensor([[1.0, 1.0]]))
        return [self.head1(h).sum(), self.head2(h).sum()]

    def shared(self) -> list[torch.nn.Parameter]:
        return list(self.trunk.parameters())

    def heads(self) -> list[torch.nn.Parameter]:
        return [*self.head1.parameters(), *self.head2.parameters()]


def _flat_trunk_grads(model: _TwoHeadModel, loss: torch.Tensor) -> torch.Tensor:
    grads = torch.autograd.grad(loss, model.shared(), retain_graph=True)
    return torch.cat([g.reshape(-1) for g in grads])


def _record_and_combine(
    model: _TwoHeadModel, losses: list[torch.Tensor], generator: torch.Generator | None = None
) -> SharedGradients:
    """Records the losses (which share the trunk's graph) and combines them with PCGrad."""
    grads = SharedGradients(model.shared(), model.heads(), n_tasks=len(losses))
    for row, loss in enumerate(losses):
        grads.record(row, loss, retain_graph=row < len(losses) - 1)
    _combine(grads, len(losses), generator)
    return grads


def _sgd_step_pcgrad(model: _TwoHeadModel) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # no optimizer.zero_grad(): SharedGradients zeroes the shared buffer its .grad views read
    _record_and_combine(model, model.losses(), generator=torch.Generator().manual_seed(0))
    optimizer.step()


def _sgd_step_sum(model: _TwoHeadModel) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    l1, l2 = model.losses()
    (l1 + l2).backward()
    optimizer.step()


def test_pcgrad_step_differs_from_sum_step_when_gradients_conflict() -> None:
    pc_model = _TwoHeadModel(head1=[1.0, 0.0], head2=[-1.0, 1.0])
    sum_model = copy.deepcopy(pc_model)
    l1, l2 = pc_model.losses()
    # The construction really makes the two tasks' trunk gradients conflict.
    assert torch.dot(_flat_trunk_grads(pc_model, l1), _flat_trunk_grads(pc_model, l2)) < 0

    _sgd_step_pcgrad(pc_model)
    _sgd_step_sum(sum_model)

    for pc_param, sum_param in zip(pc_model.shared(), sum_model.shared(), strict=True):
        # Surgery changes the shared update when the tasks conflict.
        assert not torch.allclose(pc_param, sum_param)
    for pc_param, sum_param in zip(pc_model.heads(), sum_model.heads(), strict=True):
        # Heads get their own plain gradient either way, so they move the same.
        torch.testing.assert_close(pc_param, sum_param)


def test_pcgrad_shared_grads_equal_sum_when_gradients_agree() -> None:
    pc_model = _TwoHeadModel(head1=[1.0, 0.0], head2=[1.0, 1.0])
    sum_model = copy.deepcopy(pc_model)
    l1, l2 = pc_model.losses()
    # The construction makes the two tasks' trunk gradients agree.
    assert torch.dot(_flat_trunk_grads(pc_model, l1), _flat_trunk_grads(pc_model, l2)) >= 0

    _record_and_combine(pc_model, [l1, l2])
    s1, s2 = sum_model.losses()
    (s1 + s2).backward()

    for pc_param, sum_param in zip(pc_model.parameters(), sum_model.parameters(), strict=True):
        # Without conflict PCGrad is the plain summed gradient, on trunk and heads alike.
        torch.testing.assert_close(pc_param.grad, sum_param.grad)


def test_combining_sets_the_shared_gradient_and_heads_accumulate() -> None:
    model = _TwoHeadModel(head1=[1.0, 0.0], head2=[1.0, 1.0])
    reference = copy.deepcopy(model)
    fresh = _record_and_combine(reference, reference.losses())

    grads = SharedGradients(model.shared(), model.heads(), n_tasks=2)
    grads.flat.fill_(1.0)  # a previous step's shared gradient, not zeroed
    for p in model.heads():
        p.grad = torch.ones_like(p)
    l1, l2 = model.losses()
    grads.record(0, l1, retain_graph=True)
    grads.record(1, l2)
    _combine(grads, 2)

    # A fresh step fills .grad of every trunk and head parameter.
    for ref in reference.parameters():
        assert ref.grad is not None and ref.grad.any()
    # The combination sets the shared gradient: what the buffer held before is replaced ...
    torch.testing.assert_close(grads.flat, fresh.flat)
    for p, ref in zip(model.shared(), reference.shared(), strict=True):
        torch.testing.assert_close(p.grad, ref.grad)
    # ... while the heads' new gradients are added to what .grad held, like a plain backward.
    for p, ref in zip(model.heads(), reference.heads(), strict=True):
        assert ref.grad is not None
        torch.testing.assert_close(p.grad, ref.grad + 1)


def test_unused_shared_param_gets_zero_grad_and_heads_are_optional() -> None:
    used = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    unused = torch.nn.Parameter(torch.tensor([3.0]))
    grads = SharedGradients([used, unused], n_tasks=2)
    grads.record(0, (used * _vec(1, 0)).sum())
    grads.record(1, (used * _vec(0, 1)).sum())
    _combine(grads, 2)
    # A parameter no task touches counts as a zero gradient.
    torch.testing.assert_close(unused.grad, torch.zeros(1))
    # Orthogonal task gradients are simply summed.
    torch.testing.assert_close(used.grad, _vec(1, 1))


@pytest.mark.parametrize("n_tasks", [0, 3])
def test_pcgrad_rejects_a_step_of_no_tasks_or_more_than_the_rows(n_tasks: int) -> None:
    param = torch.nn.Parameter(torch.ones(2))
    grads = SharedGradients([param], n_tasks=2)
    # A step without tasks, or with more tasks than recorded rows, is refused with the rule
    # and the value received.
    with pytest.raises(ValueError, match=rf"n_rows must be in \[1, 2\], but got {n_tasks}$"):
        _combine(grads, n_tasks)


def test_shared_gradients_reject_empty_shared_parameters() -> None:
    # A gradient buffer without shared parameters is refused with the rule.
    with pytest.raises(
        ValueError, match=r"shared must hold at least one parameter, but got none"
    ):
        SharedGradients([], n_tasks=2)
