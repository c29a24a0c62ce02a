import copy

import pytest
import torch

from mtl_tune.platform.pcgrad import (
    GRAM_CHUNK,
    combine_rows,
    gram_matrix,
    pcgrad_backward,
    project_conflicting,
    projection_coefficients,
)


def _vec(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_two_conflicting_tasks_are_projected_and_summed() -> None:
    g1, g2 = _vec(1, 0), _vec(-1, 1)
    result = project_conflicting([g1, g2], generator=torch.Generator().manual_seed(0))
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
    torch.testing.assert_close(project_conflicting(grads), _vec(*expected))


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
    result = combine_rows(torch.stack(grads), torch.Generator().manual_seed(seed))
    # the (T, T) formulation gives the loop's result, with the same visiting orders
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("width", [5, GRAM_CHUNK, 3 * GRAM_CHUNK + 7])
def test_chunked_gram_matrix_equals_the_product(width: int) -> None:
    torch.manual_seed(width)
    rows = torch.randn(3, width)
    expected = (rows.double() @ rows.double().T).float()
    # partial products over column chunks (plus the remainder) add up to G @ G.T
    torch.testing.assert_close(gram_matrix(rows), expected, rtol=1e-5, atol=1e-4)


def test_random_cases_exercise_surgery() -> None:
    cases = [torch.stack(_random_grads(n, seed)) for n in (2, 3, 5) for seed in range(4)]
    conflicting = sum(bool(((rows @ rows.T) < 0).any()) for rows in cases)
    # most of the cases above have a conflicting pair, so the comparison covers projections
    assert conflicting >= len(cases) // 2


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
    result = project_conflicting(grads, generator=torch.Generator().manual_seed(0))
    # With no negative pairwise dot product the result is the plain sum.
    torch.testing.assert_close(result, torch.stack(grads).sum(0))


def test_inputs_are_not_modified() -> None:
    grads = [_vec(1, 0), _vec(-1, 1)]
    originals = [g.clone() for g in grads]
    project_conflicting(grads)
    # The function is pure: the caller's tensors keep their values.
    for grad, original in zip(grads, originals, strict=True):
        torch.testing.assert_close(grad, original)


def test_same_seed_gives_same_result() -> None:
    grads = [_vec(1, 0, 2), _vec(-1, 1, -1), _vec(-1, -1, 0.5)]
    first = project_conflicting(grads, generator=torch.Generator().manual_seed(7))
    second = project_conflicting(grads, generator=torch.Generator().manual_seed(7))
    # The visiting order only depends on the generator, so equal seeds give equal results.
    torch.testing.assert_close(first, second, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("grads", "match"),
    [
        ([], r"task_grads must hold at least one gradient, but got an empty sequence"),
        (
            [torch.zeros(3), torch.zeros(4)],
            r"all task gradients must have the same shape, but got shapes \[\(3,\), \(4,\)\]",
        ),
        (
            [torch.zeros(2, 2), torch.zeros(2, 2)],
            r"task gradients must be 1-D vectors, but got shape \(2, 2\)",
        ),
    ],
)
def test_invalid_task_grads_raise(grads: list[torch.Tensor], match: str) -> None:
    # Bad input is refused with the rule and the value received.
    with pytest.raises(ValueError, match=match):
        project_conflicting(grads)


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


def _sgd_step_pcgrad(model: _TwoHeadModel) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    pcgrad_backward(
        model.losses(),
        model.shared(),
        generator=torch.Generator().manual_seed(0),
        head_params=model.heads(),
    )
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

    pcgrad_backward([l1, l2], pc_model.shared(), head_params=pc_model.heads())
    s1, s2 = sum_model.losses()
    (s1 + s2).backward()

    for pc_param, sum_param in zip(pc_model.parameters(), sum_model.parameters(), strict=True):
        # Without conflict PCGrad is the plain summed gradient, on trunk and heads alike.
        torch.testing.assert_close(pc_param.grad, sum_param.grad)


def test_pcgrad_backward_accumulates_into_existing_grads() -> None:
    model = _TwoHeadModel(head1=[1.0, 0.0], head2=[1.0, 1.0])
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    reference = copy.deepcopy(model)
    for p in reference.parameters():
        p.grad = None

    pcgrad_backward(model.losses(), model.shared(), head_params=model.heads())
    pcgrad_backward(reference.losses(), reference.shared(), head_params=reference.heads())

    for p, ref in zip(model.parameters(), reference.parameters(), strict=True):
        # A fresh backward fills .grad of every trunk and head parameter.
        assert ref.grad is not None
        # New gradients are added to what .grad already held, like a plain backward.
        torch.testing.assert_close(p.grad, ref.grad + 1)


def test_unused_shared_param_gets_zero_grad_and_heads_are_optional() -> None:
    used = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    unused = torch.nn.Parameter(torch.tensor([3.0]))
    losses = [(used * _vec(1, 0)).sum(), (used * _vec(0, 1)).sum()]
    pcgrad_backward(losses, [used, unused])
    # A parameter no task touches counts as a zero gradient.
    torch.testing.assert_close(unused.grad, torch.zeros(1))
    # Orthogonal task gradients are simply summed.
    torch.testing.assert_close(used.grad, _vec(1, 1))


@pytest.mark.parametrize(
    ("n_losses", "n_params", "match"),
    [
        (0, 1, r"losses must hold at least one loss, but got an empty sequence"),
        (1, 0, r"shared_params must hold at least one parameter, but got none"),
    ],
)
def test_pcgrad_backward_rejects_empty_inputs(n_losses: int, n_params: int, match: str) -> None:
    param = torch.nn.Parameter(torch.ones(2))
    losses = [param.sum() for _ in range(n_losses)]
    # Empty inputs are refused with the rule and the value received.
    with pytest.raises(ValueError, match=match):
        pcgrad_backward(losses, [param][:n_params])
