"""A trained checkpoint as a folder other tools load: Hugging Face BERT, sentence-transformers.

`export_checkpoint` writes, whole or not at all:

- `config.json` and `model.safetensors` (the encoder, under Hugging Face's `BertModel` names,
  float32) and the tokenizer files: `transformers.AutoModel.from_pretrained(DIR)`;
- `modules.json`, `sentence_bert_config.json`, `1_Pooling/config.json` (and, for the paper's
  tanh pooler, `2_Dense/`: the pooler as a tanh Dense layer after the [CLS] token), so that
  `sentence_transformers.SentenceTransformer(DIR)` embeds sentences as the trained model does;
- `heads.safetensors` and `heads.json` (the task heads, their layout and the run's config), so
  `mtl-tune predict DIR` scores and predicts with it (`checkpoint.load_model` reads it).

Nothing here imports transformers or sentence-transformers: the files are their formats.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from mtl_tune.platform.atomic import replace_folder, write_bytes
from mtl_tune.platform.checkpoint import load_model, read_state
from mtl_tune.platform.checkpoint_files import MODEL_FILE, TOKENIZER_FILES
from mtl_tune.platform.export_files import EXPORT_FORMAT, HEADS_CONFIG, HEADS_FILE
from mtl_tune.platform.model import MultitaskBERT
from mtl_tune.platform.out_folder import OutputKind, check_out

HEAD_MODULES = ("sentiment", "paraphrase", "similarity")
ST_POOLING = {"cls": "cls", "pooler": "cls", "mean": "mean"}  # the pooler: [CLS], then 2_Dense
EXPORT_ENTRIES = frozenset({
    "config.json", MODEL_FILE, HEADS_FILE, HEADS_CONFIG, *TOKENIZER_FILES, "modules.json",
    "sentence_bert_config.json", "1_Pooling", "2_Dense",
})
EXPORT_KIND = OutputKind("export", "export", HEADS_CONFIG, EXPORT_ENTRIES.__contains__)


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().contiguous().cpu() for k, v in module.state_dict().items()}


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()


def hf_config(model: MultitaskBERT) -> dict[str, Any]:
    """The encoder's Hugging Face `config.json`."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_act": "gelu",
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        **asdict(model.encoder.config),
    }


def sentence_transformers_files(model: MultitaskBERT, max_length: int) -> dict[str, bytes]:
    """modules.json and each module's files, for the trial's pooling."""
    pooling = model.heads.pooling
    hidden = model.encoder.config.hidden_size
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]
    files = {
        "sentence_bert_config.json": _json({"max_seq_length": max_length,
                                            "do_lower_case": False}),
        "1_Pooling/config.json": _json({
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": ST_POOLING[pooling] == "cls",
            "pooling_mode_mean_tokens": ST_POOLING[pooling] == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        }),
    }
    if pooling == "pooler":
        modules.append({"idx": 2, "name": "2", "path": "2_Dense",
                        "type": "sentence_transformers.models.Dense"})
        dense = model.encoder.pooler.dense
        files["2_Dense/config.json"] = _json({
            "in_features": hidden, "out_features": hidden, "bias": True,
            "activation_function": "torch.nn.modules.activation.Tanh",
        })
        files["2_Dense/model.safetensors"] = save(
            {"linear.weight": dense.weight.detach().float().contiguous(),
             "linear.bias": dense.bias.detach().float().contiguous()},
            metadata={"format": "pt"})
    files["modules.json"] = _json(modules)
    return files


def export_checkpoint(
    checkpoint: Path, out: Path, force: bool = False, study: Path | None = None
) -> Path:
    """Writes the checkpoint as a Hugging Face / sentence-transformers / mtl-tune folder `out`.

    Args:
        checkpoint: An mtl-tune checkpoint folder (`best`, `checkpoint_000003`, ...).
        out: The folder to write; it must not exist, or be empty, unless `force`.
        force: Replace an earlier export at `out` (whole: nothing of it stays); a folder
            holding anything else is refused (`out_folder.check_out`).
        study: The study folder the checkpoint lies in, if any: `out` may not overlap it.

    Raises:
        MtlTuneError: `out` is refused (`out_folder.check_out`: it overlaps the checkpoint or
            its study, or holds files an export did not write); the checkpoint cannot be
            loaded; writing failed (the old `out` is kept).
    """
    checkpoint = Path(checkpoint)
    out = check_out(out, EXPORT_KIND, {"checkpoint": checkpoint, "study": study}, force)
    model, _, config = load_model(checkpoint)
    state = read_state(checkpoint)
    encoder = save(_tensors(model.encoder), metadata={"format": "pt"})
    heads = save({f"{name}.{k}": v for name in HEAD_MODULES
                  for k, v in _tensors(getattr(model, name)).items()}, metadata={"format": "pt"})
    contents = {
        "config.json": _json(hf_config(model)),
        MODEL_FILE: encoder,
        HEADS_FILE: heads,
        **sentence_transformers_files(model, config.max_length),
        **{n: (checkpoint / n).read_bytes() for n in TOKENIZER_FILES
           if (checkpoint / n).is_file()},
    }
    contents[HEADS_CONFIG] = _json({
        "format": EXPORT_FORMAT,
        "source": str(checkpoint.resolve()),
        "epochs_done": state.get("epochs_done"),
        "metrics": state.get("metrics", {}),
        "config": config.to_dict(),
        "bert_config": asdict(model.encoder.config),
        "heads": asdict(model.heads),
        "sha256": {n: hashlib.sha256(contents[n]).hexdigest() for n in (MODEL_FILE, HEADS_FILE)},
    })

    def write(staging: Path) -> None:
        for name, data in contents.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            write_bytes(staging / name, data)

    return replace_folder(out, write, what="exported model")
