"""Test helpers: build tiny checkpoints and data folders."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import torch

from tests.conftest import TINY_BERT, minilm_path


def save_tiny_bert(folder: Path, seed: int = 0, **overrides: int) -> Path:
    """Saves a random BERT (HF names, model.safetensors) plus MiniLM's tokenizer files."""
    from safetensors.torch import save_file

    from mtl_tune.platform.bert import BertConfig, BertModel

    config = {**TINY_BERT, **overrides}
    torch.manual_seed(seed)
    model = BertModel(BertConfig(**config))
    for p in model.parameters():  # non-trivial biases and LayerNorm weights, for parity tests
        torch.nn.init.normal_(p, std=0.05)
    (folder / "config.json").write_text(
        json.dumps({**config, "model_type": "bert", "hidden_act": "gelu"})
    )
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors"
    )
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (minilm_path() / name).is_file():
            shutil.copy(minilm_path() / name, folder / name)
    return folder


def tiny_trial(bert: Path, data: Path, **extra: object) -> dict:
    """Config keys of a fast trial: the tiny random BERT, the small data folder, short batches."""
    return {"backbone": str(bert), "data_dir": str(data), "epochs": 1, "batch_size": 8,
            "max_length": 32, "eval_batch_size": 64, **extra}


def write_subset(source: Path, dest: Path, rows: int) -> Path:
    """Copies the header and first `rows` rows of each CSV file in `source` into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.csv")):
        with path.open(encoding="utf-8") as handle:
            lines = list(itertools.islice(handle, rows + 1))  # all of a shorter file
        (dest / path.name).write_text("".join(lines), encoding="utf-8")
    return dest
