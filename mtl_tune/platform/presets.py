"""The paper's seven iterations and four beyond it as presets (each the previous one plus its
change), and the rule that turns a preset plus overrides into a `TrainConfig`. Plain data: no
torch, no Ray.

Values not in the paper's table are the BERT fine-tuning defaults (lr 5e-5, dropout 0.1) until
iteration 7 sets the searched lr 1e-5 and dropout 0.3. Iterations 8 to 11 were chosen on dev
scores only (never test), from runs of the bundled MiniLM on 4,000 training rows per task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from mtl_tune.exceptions import ConfigError, did_you_mean
from mtl_tune.platform.config import TrainConfig

# config keys a study adds for itself; they are not training settings


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    overrides: MappingProxyType  # TrainConfig keys set by this preset (cumulative)


_CHANGES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "it1-baseline",
        "baseline: SST batches only, linear STS head, dropout in the SST head only",
        {
            "sampling": "sst-only",
            "sts_head": "linear",
            "pair_dropout": False,
            "combine": "sum",
            "lr": 5e-5,
            "dropout": 0.1,
            "pooling": "pooler",
            "pair_encoding": "siamese",
        },
    ),
    ("it2-dropout", "+ dropout in the paraphrase and STS heads", {"pair_dropout": True}),
    ("it3-cosine-sts", "+ cosine-similarity STS head", {"sts_head": "cosine"}),
    (
        "it4-round-robin",
        "+ unbalanced round-robin over the three tasks",
        {"sampling": "round-robin"},
    ),
    ("it5-pcgrad", "+ gradient surgery (PCGrad) across task losses", {"combine": "pcgrad"}),
    ("it6-balanced", "+ balanced round-robin (smaller tasks cycled)", {"sampling": "balanced"}),
    (
        "it7-cosrelu-tuned",
        "+ ReLU(cos) x5 STS head, lr 1e-5, dropout 0.3 (the paper's searched values)",
        {"sts_head": "cosine-relu", "lr": 1e-5, "dropout": 0.3},
    ),
    # beyond the paper: each chosen on dev scores of single-seed screens; their dev and test
    # scores are in the README's tables ("Iterations beyond the paper"), not here, where they
    # would go stale
    ("it8-mean-pooling", "+ mean pooling (MiniLM was trained with it)", {"pooling": "mean"}),
    (
        "it9-cross-encoder",
        "+ each pair encoded jointly, [CLS] a [SEP] b",
        {"pair_encoding": "cross"},
    ),
    (
        "it10-warmup-decay",
        "+ linear decay after 10% warmup, clipping at 1.0, lr 2e-4 (lr chosen on a dev screen)",
        {"lr_schedule": "linear", "warmup_ratio": 0.1, "max_grad_norm": 1.0, "lr": 2e-4},
    ),
    (
        "it11-cagrad",
        "+ CAGrad, c = 0.5, in place of PCGrad (chosen on a dev screen among the combinations)",
        {"combine": "cagrad", "cagrad_c": 0.5},
    ),
]


def _build() -> dict[str, Preset]:
    presets: dict[str, Preset] = {}
    current: dict[str, Any] = {}
    for name, description, change in _CHANGES:
        current = {**current, **change}
        presets[name] = Preset(name, description, MappingProxyType(dict(current)))
    return presets


PRESETS: dict[str, Preset] = _build()


def get_preset(name: str) -> Preset:
    """The preset registered as `name`; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise ConfigError(f"trainable must be one of {list(PRESETS)}, but got {name!r}"
                          f"{did_you_mean(name, PRESETS)}")
    return PRESETS[name]


def resolve_config(name: str | None, config: Mapping[str, Any]) -> TrainConfig:
    """The preset of `name` (or of config["trainable"]), overridden key by key by `config`."""
    name = name or config.get("trainable")
    preset = dict(get_preset(name).overrides) if name else {}
    values = {k: v for k, v in config.items() if k != "trainable"}
    return TrainConfig.from_mapping({**preset, **values}, source=f"trainable {name or 'multitask'}")
