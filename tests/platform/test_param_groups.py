"""The optimizer's parameter groups: weight decay on weight matrices and embeddings only (never a
bias or a LayerNorm's parameters), layer-wise learning-rate decay, the heads' own rate, and a run
checkpointed before the groups resuming as it started."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtl_tune.exceptions import ConfigError
from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.checkpoint import restore_trainer, save_checkpoint
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.param_groups import model_groups
from mtl_tune.platform.train import Trainer, build_model
from tests.platform.test_train import _config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# every weight matrix of a BERT layer (the bias beside each is not decayed)
LAYER_MATRICES = ("attention.self.query", "attention.self.key", "attention.self.value",
                  "attention.output.dense", "intermediate.dense", "output.dense")


def _names(model: object, groups: list[dict]) -> dict[str, list[str]]:
    names = {id(p): n for n, p in model.named_parameters()}  # type: ignore[attr-defined]
    return {g["name"]: [names[id(p)] for p in g["params"]] for g in groups}


@pytest.mark.integration  # the real all-MiniLM-L6-v2
def test_minilm_decays_its_matrices_and_embeddings_not_its_biases_or_layer_norms() -> None:
    config = TrainConfig(weight_decay=0.01, head_hidden=16)  # the bundled all-MiniLM-L6-v2
    model = build_model(config)
    groups = model_groups(model, config)
    decayed = {n for g in groups if g["weight_decay"] for n in _names(model, [g])[g["name"]]}
    undecayed = {n for g in groups if not g["weight_decay"]
                 for n in _names(model, [g])[g["name"]]}
    every = {n for n, p in model.named_parameters() if p.requires_grad}
    # each parameter in exactly one group
    assert decayed | undecayed == every and not decayed & undecayed
    assert sum(len(g["params"]) for g in groups) == len(every)
    # decayed: the three embedding tables, six matrices per layer, the pooler's, the heads'
    expected = {f"encoder.embeddings.{t}_embeddings.weight"
                for t in ("word", "position", "token_type")}
    expected |= {f"encoder.encoder.layer.{i}.{m}.weight" for i in range(6) for m in LAYER_MATRICES}
    expected |= {"encoder.pooler.dense.weight"}
    assert {n for n in decayed if n.startswith("encoder.")} == expected
    assert {n for n in decayed if not n.startswith("encoder.")} == {
        n for n in every if not n.startswith("encoder.") and n.endswith(".weight")}
    # undecayed: every bias and every LayerNorm weight, the embeddings' LayerNorm included
    assert all(n.endswith(".bias") or ".LayerNorm." in n for n in undecayed)
    assert "encoder.embeddings.LayerNorm.weight" in undecayed
    assert len([n for n in undecayed if n.endswith("LayerNorm.weight")]) == 1 + 2 * 6
    assert {n for n in every if n.endswith(".bias")} <= undecayed


def test_layer_decay_and_head_lr_set_each_groups_rate(tiny_bert_dir: Path) -> None:
    config = TrainConfig(backbone=str(tiny_bert_dir), lr=1e-4, layer_lr_decay=0.5,
                         head_lr=1e-3, weight_decay=0.1)
    model = build_model(config)
    groups = model_groups(model, config)
    layers = model.encoder.config.num_hidden_layers  # 2
    rates = {g["name"]: (g["lr"], g["weight_decay"]) for g in groups}
    # the top layer (with the pooler) at lr, each below at half the one above, the heads at
    # head_lr; the undecayed twin of each group at the same rate
    assert rates == {
        f"layer {layers - 1}": (1e-4, 0.1), f"layer {layers - 1} (no decay)": (1e-4, 0.0),
        "layer 0": (5e-5, 0.1), "layer 0 (no decay)": (5e-5, 0.0),
        "embeddings": (2.5e-5, 0.1), "embeddings (no decay)": (2.5e-5, 0.0),
        "heads": (1e-3, 0.1), "heads (no decay)": (1e-3, 0.0),
    }
    # the first group is the encoder's own rate: the one a run reports
    assert groups[0]["name"] == f"layer {layers - 1}"
    assert "encoder.pooler.dense.weight" in _names(model, groups)[f"layer {layers - 1}"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("layer_lr_decay", 0.0, r"`0 < layer_lr_decay <= 1` must hold, but got "
                                r"layer_lr_decay=0.0"),
        ("layer_lr_decay", 1.5, r"`0 < layer_lr_decay <= 1` must hold, but got "
                                r"layer_lr_decay=1.5"),
        ("head_lr", -1e-4, r"`0 <= head_lr < 1` must hold, but got head_lr=-0.0001"),
    ],
)
def test_bad_rates_are_refused_with_rule_and_value(field: str, value: float,
                                                   message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})


def test_a_run_checkpointed_before_the_groups_resumes_as_it_started(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    config = _config(tiny_bert_dir, tiny_data_dir, epochs=3, weight_decay=0.1,
                     lr_schedule="linear")
    splits = build_bundle(config).for_config(config)

    def as_before(trainer: Trainer) -> Trainer:  # the optimizer of the code before the groups
        trainer._build_optimizer([{"params": list(trainer.model.parameters())}])
        return trainer

    straight = as_before(Trainer(config, splits))
    straight.run_epoch(1)
    uninterrupted = straight.run_epoch(2).metrics
    first = as_before(Trainer(config, splits))
    save_checkpoint(first, tmp_path / "ckpt", first.run_epoch(1).metrics)
    resumed = Trainer(config, splits)  # today's: groups, until it loads the old checkpoint
    assert len(resumed.optimizer.param_groups) > 1
    restore_trainer(resumed, tmp_path / "ckpt")
    assert len(resumed.optimizer.param_groups) == 1
    after = resumed.run_epoch(2).metrics
    for key in ("overall", "train_loss_sst", "train_loss_para", "train_loss_sts", "lr"):
        # epoch 2 goes on as the old run would have: every parameter decayed, one schedule
        assert after[key] == pytest.approx(uninterrupted[key], abs=1e-6), key
