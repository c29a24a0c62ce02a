"""SMART smoothness-inducing adversarial regularisation (Jiang et al. 2020): the `smart_*` keys.

For a training batch with clean head outputs `f(x)`, a perturbation `delta` of the encoder's
embedding outputs is searched within the max-norm ball of radius `eps` (per token): it starts
as Gaussian noise of scale `eps`, then takes `steps` projected ascent steps of length `eps`
along the max-norm-normalised gradient of the divergence. The regulariser is the divergence
between `f(x)` and `f(x + delta)`: symmetric KL for class logits (a paraphrase logit counts as
two classes) and the squared error for the similarity score, each side measured against the
other's detached value, as MT-DNN's implementation does. The trainer adds `smart_weight`
times it to the task's loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_TINY = 1e-12


class EmbeddingNoise:
    """Adds a perturbation to each output of `module` while active, one tensor per call.

    Calls are counted from `rewind()`, so a forward pass that calls the module twice (the two
    sentences of a pair) gets the same two perturbations on every pass.
    """

    def __init__(self, module: nn.Module, eps: float) -> None:
        self.module, self.eps = module, eps
        self.noise: list[torch.Tensor] = []
        self._calls = 0
        self._handle: Any = None

    def __enter__(self) -> EmbeddingNoise:
        self._handle = self.module.register_forward_hook(self._add)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()

    def rewind(self) -> None:
        self._calls = 0

    def _add(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self._calls == len(self.noise):
            start = (torch.randn_like(output) * self.eps).clamp(-self.eps, self.eps)
            self.noise.append(start.requires_grad_())
        noise = self.noise[self._calls]
        self._calls += 1
        return output + noise

    def ascend(self, grads: tuple[torch.Tensor, ...]) -> None:
        """One projected ascent step of length eps along each normalised gradient."""
        moved = []
        for noise, grad in zip(self.noise, grads, strict=True):
            direction = grad / (grad.abs().amax(dim=-1, keepdim=True) + _TINY)
            step = (noise.detach() + self.eps * direction).clamp(-self.eps, self.eps)
            moved.append(step.requires_grad_())
        self.noise = moved


def divergence(adversarial: torch.Tensor, clean: torch.Tensor, regression: bool) -> torch.Tensor:
    """SMART's symmetric divergence between two head outputs of one batch (mean over rows)."""
    if regression:
        return F.mse_loss(adversarial, clean)
    if adversarial.dim() == 1:  # one logit: the two-class logits (0, x)
        adversarial = torch.stack([torch.zeros_like(adversarial), adversarial], dim=-1)
        clean = torch.stack([torch.zeros_like(clean), clean], dim=-1)
    p_log, q_log = F.log_softmax(adversarial, dim=-1), F.log_softmax(clean, dim=-1)
    forward = F.kl_div(p_log, q_log.detach(), log_target=True, reduction="batchmean")
    backward = F.kl_div(q_log, p_log.detach(), log_target=True, reduction="batchmean")
    return forward + backward


def smoothness(
    forward: Callable[[], torch.Tensor],
    embeddings: nn.Module,
    clean: torch.Tensor,
    regression: bool,
    eps: float,
    steps: int,
) -> torch.Tensor:
    """SMART's regulariser for one batch.

    Args:
        forward: Runs the model on the batch and returns the head output (float).
        embeddings: The module whose outputs are perturbed (the encoder's embeddings).
        clean: The head output of the unperturbed batch, still in the graph.
        regression: The output is a score (squared error) rather than logits (KL).
        eps: Radius of the perturbation (max-norm per token).
        steps: Ascent steps (>= 1).

    Returns:
        The divergence at the found perturbation, differentiable in the model's parameters.
    """
    with EmbeddingNoise(embeddings, eps) as noise:
        for _ in range(steps):
            noise.rewind()
            loss = divergence(forward(), clean.detach(), regression)
            noise.ascend(torch.autograd.grad(loss, noise.noise))
        noise.rewind()
        return divergence(forward(), clean, regression)
