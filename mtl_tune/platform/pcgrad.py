"""PCGrad gradient surgery (Yu et al. 2020): projects away conflicting parts of task gradients
on the shared parameters before the optimizer step."""

from collections.abc import Sequence

import torch


def _project_off_conflicts(grad: torch.Tensor, others: Sequence[torch.Tensor]) -> torch.Tensor:
    """Projects `grad` off each vector in `others` it conflicts with, visiting them in order."""
    projected = grad.clone()
    for other in others:
        dot = torch.dot(projected, other)
        if dot < 0:
            norm_sq = torch.dot(other, other)
            # dot < 0 implies other != 0, but its squared norm can still underflow to zero.
            if norm_sq > 0:
                projected = projected - dot / norm_sq * other
    return projected


def project_conflicting(
    task_grads: Sequence[torch.Tensor], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Combines per-task gradients with PCGrad.

    Each task's gradient is projected onto the normal plane of every other task's (original)
    gradient it has a negative dot product with, visiting the other tasks in a random order.
    The projected gradients are then summed.

    Args:
        task_grads: One flat 1-D gradient vector per task, all of the same shape.
        generator: Random generator for the order in which the other tasks are visited;
            the global generator when None.

    Returns:
        The sum of the projected task gradients, a 1-D tensor of the input shape.

    Raises:
        ValueError: If `task_grads` is empty, the shapes differ or the vectors are not 1-D.
    """
    if len(task_grads) == 0:
        raise ValueError("task_grads must hold at least one gradient, but got an empty sequence")
    shapes = [tuple(g.shape) for g in task_grads]
    if len(set(shapes)) != 1:
        raise ValueError(f"all task gradients must have the same shape, but got shapes {shapes}")
    if task_grads[0].dim() != 1:
        raise ValueError(f"task gradients must be 1-D vectors, but got shape {shapes[0]}")

    n_tasks = len(task_grads)
    total = torch.zeros_like(task_grads[0])
    for i, grad in enumerate(task_grads):
        order = torch.randperm(n_tasks, generator=generator).tolist()
        others = [task_grads[j] for j in order if j != i]
        total += _project_off_conflicts(grad, others)
    return total


def pcgrad_backward(
    losses: Sequence[torch.Tensor],
    shared_params: Sequence[torch.nn.Parameter],
    generator: torch.Generator | None = None,
    head_params: Sequence[torch.nn.Parameter] = (),
) -> None:
    """Backpropagates several task losses, combining their shared gradients with PCGrad.

    The PCGrad-combined gradient is added to `.grad` of each shared parameter; parameters in
    `head_params` get the plain gradient of the summed losses. Only `.grad` is written, so any
    optimizer can take the step afterwards.

    Args:
        losses: One scalar loss per task.
        shared_params: Parameters every task uses (e.g. the encoder); they get the PCGrad
            gradient. A parameter a task does not use counts as a zero gradient for it.
        generator: Random generator passed to `project_conflicting`.
        head_params: Task-specific parameters (e.g. the heads); they get the plain gradient of
            the summed losses, which for disjoint heads is each head's own task gradient.

    Raises:
        ValueError: If `losses` or `shared_params` is empty.
    """
    if len(losses) == 0:
        raise ValueError("losses must hold at least one loss, but got an empty sequence")
    shared = list(shared_params)
    if not shared:
        raise ValueError("shared_params must hold at least one parameter, but got none")
    heads = list(head_params)

    task_grads = []
    for k, loss in enumerate(losses):
        # Keep the graph only while another backward pass still needs it, so it is freed here
        # rather than when the caller drops the losses.
        retain = bool(heads) or k < len(losses) - 1
        grads = torch.autograd.grad(loss, shared, retain_graph=retain, allow_unused=True)
        flat = [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for g, p in zip(grads, shared, strict=True)
        ]
        task_grads.append(torch.cat(flat))

    combined = project_conflicting(task_grads, generator=generator)
    chunks = torch.split(combined, [p.numel() for p in shared])
    for p, chunk in zip(shared, chunks, strict=True):
        grad = chunk.view_as(p)
        if p.grad is None:
            p.grad = grad.clone()
        else:
            p.grad.add_(grad)

    if heads:
        torch.autograd.backward(torch.stack(list(losses)).sum(), inputs=heads)
