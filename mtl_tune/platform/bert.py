"""minBERT: a plain BERT encoder (embeddings, SDPA self-attention, post-LN layers, tanh pooler).

Loads any local Hugging Face BERT checkpoint folder; its outputs equal `transformers.BertModel`'s
on the same weights (tested).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mtl_tune.exceptions import CheckpointError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_json(cls, path: Path) -> BertConfig:
        """Reads the fields we use from a Hugging Face `config.json`; other keys are ignored."""
        raw = json.loads(Path(path).read_text())
        if raw.get("hidden_act", "gelu") != "gelu":
            raise CheckpointError(
                f"hidden_act must be 'gelu' for minBERT, but got {raw['hidden_act']!r} in {path}"
            )
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.size(1)
        positions = torch.arange(T, device=input_ids.device)
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )  # (B, T, H)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if config.hidden_size % config.num_attention_heads != 0:
            raise CheckpointError(
                "hidden_size must be a multiple of num_attention_heads, but got "
                f"(hidden_size={config.hidden_size}, heads={config.num_attention_heads})"
            )
        self.n_head = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, H = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, self.n_head, H // self.n_head).transpose(1, 2)  # (B, nh, T, hd)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        # mask: (B, 1, 1, T) boolean, True where a key may be attended to
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0
        )
        return y.transpose(1, 2).reshape(B, T, H)


class DenseAddNorm(nn.Module):
    """dense -> dropout -> add the residual -> LayerNorm (BERT's post-LN sublayer output)."""

    def __init__(self, d_in: int, d_out: int, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(h)))


class Attention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = SelfAttention(config)
        self.output = DenseAddNorm(config.hidden_size, config.hidden_size, config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class Intermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # (B, T, intermediate)


class Layer(nn.Module):
    """One post-LayerNorm transformer block; submodule names follow the HF checkpoint keys."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = DenseAddNorm(config.intermediate_size, config.hidden_size, config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class Pooler(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))  # (B, H), from the [CLS] state


class BertModel(nn.Module):
    """The encoder: `forward` returns {"last_hidden_state": (B, T, H), "pooler_output": (B, H)}."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # BERT's own initialisation, used for random-weight (test) configs
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        x = self.encoder(self.embeddings(input_ids, token_type_ids), mask)
        return {"last_hidden_state": x, "pooler_output": self.pooler(x)}

    @classmethod
    def from_pretrained(cls, path: str | Path) -> BertModel:
        """Loads a local Hugging Face BERT folder (config.json and weights).

        Args:
            path: A folder with `config.json` and `model.safetensors` or `pytorch_model.bin`.
                Parameter names may carry the `bert.` prefix of task models.

        Returns:
            The model in eval mode, weights loaded without executing code.

        Raises:
            CheckpointError: The folder does not exist (a hub name is not downloaded), or weights
                are missing or unexpected (listed by name).
        """
        folder = resolve_model_dir(path)
        model = cls(BertConfig.from_json(folder / "config.json"))
        state = _read_weights(folder)
        load_encoder_state(model, state, source=str(folder))
        return model.eval()


def resolve_model_dir(path: str | Path) -> Path:
    """Returns the checkpoint folder, or explains why a name that is not a local folder fails."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"model folder {folder} has no config.json")
        return folder
    looks_like_hub = "/" in str(path) and not str(path).startswith((".", "/", "~"))
    hint = (
        f"{str(path)!r} looks like a Hugging Face hub name; mtl-tune never downloads at run time. "
        "Download the model once (e.g. `huggingface-cli download NAME --local-dir DIR`) and pass "
        "that folder."
        if looks_like_hub or "/" not in str(path)
        else "pass an existing local folder with config.json and model weights."
    )
    raise CheckpointError(f"model path {str(path)!r} is not a local folder: {hint}")


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise CheckpointError(
        f"model folder {folder} has neither model.safetensors nor pytorch_model.bin"
    )


def load_encoder_state(model: BertModel, state: dict[str, torch.Tensor], source: str) -> None:
    """Copies a HF-named state dict into `model`, reporting missing and unexpected keys by name."""
    ours = model.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("bert.")
        # old TF-converted checkpoints name LayerNorm parameters gamma/beta
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias"
        )
        renamed[key] = value
    # buffers and heads of pre-training checkpoints that the encoder does not hold
    ignorable = ("embeddings.position_ids", "cls.")
    unexpected = sorted(k for k in renamed if k not in ours and not k.startswith(ignorable))
    missing = sorted(k for k in ours if k not in renamed)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {source} does not match the BERT config: "
            f"missing weights {missing or 'none'}; unexpected weights {unexpected or 'none'}"
        )
    for key, value in renamed.items():
        if key in ours and value.shape != ours[key].shape:
            raise CheckpointError(
                f"weight {key} in {source} has shape {tuple(value.shape)}, "
                f"but the config gives {tuple(ours[key].shape)}"
            )
    model.load_state_dict({k: v for k, v in renamed.items() if k in ours})
