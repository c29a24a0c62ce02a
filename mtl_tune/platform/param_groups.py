"""The optimizer's parameter groups: which parameters weight decay reaches, and the learning
rate of each.

BERT's fine-tuning recipe, as nanoGPT's `configure_optimizers` has it: weight decay reaches the
weight matrices and the embedding tables, never a bias or a LayerNorm's parameters (`decays`).
With `layer_lr_decay` d < 1 the top encoder layer (and the pooler above it) trains at `lr`, each
layer below at d times the one above, the embeddings at `lr * d**layers`; the task heads train
at `head_lr` (0: at `lr`). Groups are listed from the top down, so the first is the encoder's
own `lr` (the rate a run reports).

A run checkpointed before these groups (one group of every model parameter) resumes with that
one group, as it started (`Trainer.load_state_dict`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.model import MultitaskBERT

UNDECAYED_MODULES = (nn.LayerNorm,)  # none of their parameters decays
UNDECAYED_NAMES = ("bias",)  # nor does a parameter of any module with one of these names
ENCODER = "encoder."  # the model's own parameter names: the encoder, then the three heads


def decays(module: nn.Module, name: str) -> bool:
    """Whether weight decay reaches the parameter `name` of `module` (its own, not a child's)."""
    return not isinstance(module, UNDECAYED_MODULES) and name not in UNDECAYED_NAMES


def _depth(name: str, layers: int) -> int | None:
    """Where a parameter sits in the encoder: 0 the embeddings, i + 1 the layer i, `layers` the
    pooler (on top of the last layer); None for a head's."""
    if not name.startswith(ENCODER):
        return None
    parts = name[len(ENCODER):].split(".")
    if parts[0] == "embeddings":
        return 0
    if parts[0] == "encoder" and parts[1] == "layer":
        return int(parts[2]) + 1
    return layers


def model_groups(model: MultitaskBERT, config: TrainConfig) -> list[dict[str, Any]]:
    """The model's parameter groups for AdamW (`name`, `params`, `lr`, `weight_decay`), from the
    top of the encoder down (the last layer's group holds the pooler too), then the heads;
    empty groups are left out."""
    layers = model.encoder.config.num_hidden_layers
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            full = f"{module_name}.{name}" if module_name else name
            depth = _depth(full, layers)
            decayed = decays(module, name)
            key = (layers + 1 if depth is None else depth, decayed)
            if key not in groups:
                if depth is None:
                    where, lr = "heads", config.head_lr or config.lr
                else:
                    where = "embeddings" if depth == 0 else f"layer {depth - 1}"
                    lr = config.lr * config.layer_lr_decay ** (layers - depth)
                groups[key] = {
                    "name": f"{where}{'' if decayed else ' (no decay)'}", "params": [],
                    "lr": lr, "weight_decay": config.weight_decay if decayed else 0.0,
                }
            groups[key]["params"].append(param)
    # the encoder from the top (the last layer, with the pooler) down, then the heads (depth
    # layers + 1); in each, the decayed parameters before the others
    order = sorted(groups, key=lambda k: (k[0] == layers + 1, -k[0], not k[1]))
    return [groups[key] for key in order]
