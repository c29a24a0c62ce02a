"""PCGrad gradient surgery (Yu et al. 2020) on the Gram matrix of the task gradients.

Each task's gradient is projected onto the normal plane of every other task's (original)
gradient it has a negative dot product with, visiting the others in a random order; the
projected gradients are summed. Every projected gradient is a combination of the original rows,
so the whole surgery is computed on their (T, T) Gram matrix: `SharedGradients.gram` makes one
pass over the P parameters for it, `SharedGradients.combine` one for the weighted sum, and the
tiny (T, T) work in between runs here, on the Gram matrix's device with `torch.where` instead of
Python branches, so the host never waits for the GPU. This module is pure math on tensors.
"""

import torch


def projection_coefficients(
    gram: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Each task's projected gradient as a combination of the original ones.

    Args:
        gram: The (T, T) Gram matrix of the task gradients, `G @ G.T`.
        generator: CPU random generator for the order in which each task visits the others
            (one `randperm` per task, in task order); the global generator when None.

    Returns:
        A (T, T) tensor `C` on the Gram matrix's device with `g_i' = C[i] @ G`, so the PCGrad
        sum of the projected gradients is `C.sum(dim=0) @ G`.
    """
    n_tasks = gram.shape[0]
    # row i holds the coefficients of task i's projected gradient over the original ones
    coef = torch.eye(n_tasks, dtype=gram.dtype, device=gram.device)
    norms = gram.diagonal()
    # a conflict implies a nonzero gradient, but its squared norm can still underflow to zero
    usable = norms > 0
    safe_norms = torch.where(usable, norms, torch.ones_like(norms))
    for i in range(n_tasks):
        order = torch.randperm(n_tasks, generator=generator).tolist()
        for j in order:
            if j == i:
                continue
            dot = coef[i] @ gram[:, j]  # <g_i', g_j>
            conflict = (dot < 0) & usable[j]
            coef[i, j] -= torch.where(conflict, dot / safe_norms[j], torch.zeros_like(dot))
    return coef
