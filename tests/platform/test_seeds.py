"""A seed split in two (`init_seed`, `data_seed`): the heads' initialisation and dropout from
one, the task schedule and the batches' order from the other; a run naming neither is the run
`seed` always gave."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.train import Trainer
from tests.platform.test_train import _config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _heads(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.model.head_parameters()]


def _batches(trainer: Trainer, epoch: int) -> list[tuple[str, ...]]:
    """The ids of the first rows of each task's batches, in the order the epoch takes them."""
    rng = trainer._seed_epoch(epoch)
    order = [tuple(t) for t in trainer.epoch_steps(epoch)]
    first = {t: trainer.splits[t]["train"] for t in trainer.train_tasks}
    return [*order, tuple(str(rng.permutation(len(first[t]))[:3]) for t in sorted(first))]


def test_the_two_seeds_split_initialisation_from_data_order(
    tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:
    base = _config(tiny_bert_dir, tiny_data_dir, seed=3, sampling="proportional")
    splits = build_bundle(base).for_config(base)
    plain = Trainer(base, splits)
    named = Trainer(dataclasses.replace(base, init_seed=3, data_seed=3), splits)
    # naming both as the seed changes nothing: the heads, the schedule, a trained epoch
    assert all(torch.equal(a, b) for a, b in zip(_heads(plain), _heads(named), strict=True))
    assert _batches(plain, 1) == _batches(named, 1)
    plain.train_epoch(1)
    named.train_epoch(1)
    for a, b in zip(plain.model.parameters(), named.model.parameters(), strict=True):
        assert torch.equal(a, b)

    fresh = Trainer(base, splits)
    other_data = Trainer(dataclasses.replace(base, data_seed=8), splits)
    other_init = Trainer(dataclasses.replace(base, init_seed=8), splits)
    # another data seed: the same heads, another order of tasks and batches
    assert all(torch.equal(a, b) for a, b in zip(_heads(fresh), _heads(other_data),
                                                 strict=True))
    assert _batches(fresh, 1) != _batches(other_data, 1)
    # another initialisation seed: other heads, the same order
    assert not all(torch.equal(a, b) for a, b in zip(_heads(fresh), _heads(other_init),
                                                     strict=True))
    assert _batches(fresh, 1) == _batches(other_init, 1)
    assert other_init.config.initialisation_seed == 8 and other_init.config.order_seed == 3
