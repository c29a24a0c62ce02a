"""SMART: the divergences, the perturbation's ball and ascent, and its effect on a training step."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.presets import resolve_config
from mtl_tune.platform.smart import EmbeddingNoise, divergence, smoothness
from mtl_tune.platform.train import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_divergence_is_symmetric_kl_or_squared_error() -> None:
    p, q = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    pp, qq = F.softmax(p, -1), F.softmax(q, -1)
    expected = (pp * (pp / qq).log()).sum() + (qq * (qq / pp).log()).sum()
    assert float(divergence(p, q, regression=False)) == pytest.approx(float(expected), rel=1e-5)
    # a single paraphrase logit x is the two-class distribution (0, x)
    two = divergence(torch.stack([torch.zeros(1), torch.tensor([1.5])], -1),
                     torch.stack([torch.zeros(1), torch.tensor([-0.5])], -1), regression=False)
    assert float(divergence(torch.tensor([1.5]), torch.tensor([-0.5]), False)) == float(two)
    assert float(divergence(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 1.0]), True)) == 2.5
    assert float(divergence(p, p, regression=False)) == pytest.approx(0.0, abs=1e-7)


class _Toy(nn.Module):
    """An 'embeddings' module and a nonlinear head over it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embeddings = nn.Linear(4, 8)
        self.head = nn.Sequential(nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embeddings(x)).mean(dim=1)  # (B, T, 4) -> (B, 3)


def test_perturbation_stays_in_the_ball_and_ascends() -> None:
    model, x, eps = _Toy(), torch.randn(5, 6, 4), 0.05
    clean = model(x)
    with EmbeddingNoise(model.embeddings, eps) as noise:
        start = divergence(model(x), clean.detach(), False)
        noise.rewind()
        noise.ascend(torch.autograd.grad(start, noise.noise))
        noise.rewind()
        after = divergence(model(x), clean.detach(), False)
        # the ascent step raises the divergence and the perturbation stays within eps
        assert float(after.detach()) > float(start.detach()) > 0
        assert float(noise.noise[0].detach().abs().max()) == pytest.approx(eps)  # at the edge
        # every call of the module in one pass gets its own perturbation, reused after rewind
        assert len(noise.noise) == 1
    # the hook is removed on exit
    assert torch.equal(model(x), clean)


def test_smoothness_reaches_the_parameters() -> None:
    model, x = _Toy(), torch.randn(5, 6, 4)
    clean = model(x)
    reg = smoothness(lambda: model(x), model.embeddings, clean, regression=False, eps=0.05,
                     steps=2)
    reg.backward()
    assert float(reg.detach()) > 0
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.parameters())


def test_smart_weight_changes_the_trained_model(tiny_bert_dir: Path, tiny_data_dir: Path) -> None:
    values = {"backbone": str(tiny_bert_dir), "data_dir": str(tiny_data_dir), "epochs": 1,
              "batch_size": 8, "max_length": 32, "max_examples": 24, "dropout": 0.0,
              "lr": 1e-3}
    weights = {}
    for smart in (0.0, 5.0):
        config = resolve_config("it6-balanced", {**values, "smart_weight": smart,
                                                  "smart_eps": 0.5})
        trainer = Trainer(config, build_bundle(config).for_config(config))
        trainer.train_epoch(1, max_steps=2)
        weights[smart] = trainer.model.sentiment.classifier.weight.detach().clone()
    # the smoothness term adds to the gradient: the same seed and data train another model
    assert not torch.allclose(weights[0.0], weights[5.0])
