"""Checkpoint folders: weights (safetensors), optimizer state, run state and dev predictions.

A checkpoint is self-contained: it carries the encoder's config and tokenizer files, so a model
can be rebuilt and used for prediction without its original backbone folder. Nothing is
unpickled: weights are safetensors, the optimizer state loads with `weights_only=True`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mtl_tune.exceptions import CheckpointError
from mtl_tune.platform.bert import BertConfig, BertModel
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.evaluate import TaskPredictions
from mtl_tune.platform.model import HeadConfig, MultitaskBERT
from mtl_tune.platform.tokenizer import WordPieceTokenizer
from mtl_tune.platform.train import Trainer

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.json"
PREDICTIONS_FILE = "dev_predictions.json"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")


def save_checkpoint(
    trainer: Trainer,
    folder: Path,
    metrics: dict[str, float],
    predictions: dict[str, TaskPredictions] | None = None,
    extra: dict[str, Any] | None = None,
    optimizer: bool = True,
) -> Path:
    """Writes the trainer's state into `folder` (created if needed).

    Args:
        optimizer: Also write the optimizer state, which only resuming needs (for MiniLM it
            is twice the weights: 182 of 270 MB); a finished run's checkpoints leave it out.
    """
    folder.mkdir(parents=True, exist_ok=True)
    dtype = getattr(torch, trainer.config.checkpoint_dtype)
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().contiguous().cpu()
        for k, v in trainer.model.state_dict().items()
    }
    save_file(state, str(folder / MODEL_FILE))
    if optimizer:
        torch.save(trainer.optimizer.state_dict(), folder / OPTIMIZER_FILE)
    else:  # an earlier checkpoint's state in this folder would not match these weights
        drop_optimizer_state(folder)
    backbone = trainer.config.backbone_path
    for name in TOKENIZER_FILES:
        if (backbone / name).is_file():
            shutil.copy(backbone / name, folder / name)
    record = {
        "epochs_done": trainer.epochs_done,
        "best_overall": trainer.best_overall,
        "config": trainer.config.to_dict(),
        "bert_config": asdict(trainer.model.encoder.config),
        "heads": asdict(trainer.model.heads),
        "metrics": metrics,
        **(extra or {}),
    }
    (folder / STATE_FILE).write_text(json.dumps(record, indent=2))
    if predictions is not None:
        write_predictions(folder / PREDICTIONS_FILE, predictions)
    return folder


def read_state(folder: Path) -> dict[str, Any]:
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} is not an mtl-tune checkpoint: {STATE_FILE} is missing")
    return json.loads(path.read_text())


def check_compatible(folder: Path, config: TrainConfig, model: MultitaskBERT) -> None:
    """Refuses a checkpoint made with another backbone architecture or head layout."""
    state = read_state(folder)
    ours_bert, ours_heads = asdict(model.encoder.config), asdict(model.heads)
    for label, theirs, ours in (
        ("backbone", state["bert_config"], ours_bert),
        ("head layout", state["heads"], ours_heads),
    ):
        diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
        if diff:
            detail = ", ".join(
                f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items()
            )
            raise CheckpointError(f"checkpoint {folder} was made with another {label} ({detail})")


def has_optimizer_state(folder: Path) -> bool:
    """Whether a checkpoint can resume training (weights-only ones are for prediction)."""
    return (Path(folder) / OPTIMIZER_FILE).is_file()


def drop_optimizer_state(folder: Path) -> int:
    """Deletes a checkpoint's optimizer state (kept weights still predict); returns bytes freed."""
    path = Path(folder) / OPTIMIZER_FILE
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def restore_trainer(trainer: Trainer, folder: Path) -> None:
    """Loads model, optimizer and run state into `trainer` (after `check_compatible`).

    Raises:
        CheckpointError: The checkpoint does not fit the trainer's model, or it has no optimizer
            state (a finished run's checkpoint: it predicts, but cannot resume training).
    """
    folder = Path(folder)
    check_compatible(folder, trainer.config, trainer.model)
    if not has_optimizer_state(folder):
        raise CheckpointError(
            f"checkpoint {folder} has no {OPTIMIZER_FILE}: it holds the weights of a finished "
            "run (for prediction and reports), not the state to resume training from"
        )
    trainer.model.load_state_dict(load_file(str(folder / MODEL_FILE), device=str(trainer.device)))
    optimizer_state = torch.load(
        folder / OPTIMIZER_FILE, map_location=trainer.device, weights_only=True
    )
    trainer.optimizer.load_state_dict(optimizer_state)
    state = read_state(folder)
    trainer.epochs_done = int(state["epochs_done"])
    trainer.best_overall = float(state["best_overall"])


def load_model(folder: Path) -> tuple[MultitaskBERT, WordPieceTokenizer, TrainConfig]:
    """Rebuilds a trained model, its tokenizer and its config from a checkpoint folder alone."""
    folder = Path(folder)
    state = read_state(folder)
    config = TrainConfig.from_mapping(state["config"], source=str(folder / STATE_FILE))
    model = MultitaskBERT(
        BertModel(BertConfig(**state["bert_config"])), HeadConfig(**state["heads"])
    )
    model.load_state_dict(load_file(str(folder / MODEL_FILE)))
    tokenizer = WordPieceTokenizer.from_pretrained(folder, max_length=config.max_length)
    return model.eval(), tokenizer, config


def write_predictions(path: Path, predictions: dict[str, TaskPredictions]) -> None:
    """Per-example predictions as JSON: task -> {ids, predictions, labels}."""
    payload = {
        task: {
            "ids": list(p.ids),
            "predictions": p.predictions.tolist(),
            "labels": None if p.labels is None else p.labels.tolist(),
        }
        for task, p in predictions.items()
    }
    path.write_text(json.dumps(payload))


def read_predictions(path: Path) -> dict[str, TaskPredictions]:
    payload = json.loads(Path(path).read_text())
    out = {}
    for task, p in payload.items():
        preds = np.asarray(p["predictions"])
        labels = None if p["labels"] is None else np.asarray(p["labels"])
        correct = None
        if labels is not None and task != "sts":
            correct = (preds == labels).astype(np.int8)
        out[task] = TaskPredictions(task, tuple(p["ids"]), preds, labels, correct)
    return out
