"""Checkpoint folders: weights (safetensors), optimizer state, run state and dev predictions.

A checkpoint is self-contained: it carries the encoder's config and tokenizer files, so a model
can be rebuilt and used for prediction without its original backbone folder. Nothing is
unpickled: weights are safetensors, the optimizer state loads with `weights_only=True`.

A checkpoint is written whole or not at all (`atomic.replace_folder`), and `trainer_state.json`
records the sha256 of every file beside it; loading checks the weights and the optimizer state
against it, so a damaged file is an error rather than a silently different model.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from mtl_tune.exceptions import CheckpointError
from mtl_tune.platform.atomic import existing_folder, replace_folder, write_bytes
from mtl_tune.platform.bert import BertConfig, BertModel
from mtl_tune.platform.checkpoint_files import (
    MODEL_FILE,
    OPTIMIZER_FILE,
    PREDICTIONS_FILE,
    SIMULATED_STATE_FILE,
    STATE_FILE,
    TOKENIZER_FILES,
)
from mtl_tune.platform.config import HeadConfig, TrainConfig
from mtl_tune.platform.evaluate import TaskPredictions
from mtl_tune.platform.export_files import EXPORT_FORMAT, HEADS_CONFIG, HEADS_FILE, is_exported
from mtl_tune.platform.model import MultitaskBERT
from mtl_tune.platform.progress import Progress
from mtl_tune.platform.tasks import TASKS
from mtl_tune.platform.tokenizer import WordPieceTokenizer


class Checkpointable(Protocol):
    """What a checkpoint reads and restores of a training run (`train.Trainer`): its
    `state_dict()` and `load_state_dict()`, and the config, model and device it was built with."""

    config: TrainConfig
    model: MultitaskBERT
    device: torch.device

    def state_dict(self, optimizer: bool = True) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


RESUME_PARTS = ("optimizer", "scheduler", "combination")  # of a state dict: optimizer.pt


def save_checkpoint(
    trainer: Checkpointable,
    folder: Path,
    metrics: dict[str, float],
    predictions: dict[str, TaskPredictions] | None = None,
    extra: dict[str, Any] | None = None,
    optimizer: bool = True,
) -> Path:
    """Writes the trainer's `state_dict()` as the checkpoint `folder`, replacing it whole.

    Args:
        optimizer: Also write the optimizer state, which only resuming needs (for MiniLM it
            is twice the weights: 182 of 270 MB); a finished run's checkpoints leave it out.

    Raises:
        MtlTuneError: The folder could not be written (a full disk is named as such); a
            checkpoint that was there before is kept as it was.
    """
    state = trainer.state_dict(optimizer=optimizer)
    dtype = getattr(torch, trainer.config.checkpoint_dtype)
    weights = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().contiguous().cpu()
        for k, v in state["model"].items()
    }
    contents = {MODEL_FILE: save(weights)}
    if optimizer:
        buffer = io.BytesIO()
        torch.save({k: state[k] for k in RESUME_PARTS}, buffer)
        contents[OPTIMIZER_FILE] = buffer.getvalue()
    backbone = trainer.config.backbone_path
    contents.update(
        {n: (backbone / n).read_bytes() for n in TOKENIZER_FILES if (backbone / n).is_file()}
    )
    if predictions is not None:
        contents[PREDICTIONS_FILE] = predictions_json(predictions).encode()
    record = {
        **state["progress"],
        "config": trainer.config.to_dict(),
        "bert_config": asdict(trainer.model.encoder.config),
        "heads": asdict(trainer.model.heads),
        "metrics": metrics,
        "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()},
        **(extra or {}),
    }
    contents[STATE_FILE] = json.dumps(record, indent=2).encode()

    def write(staging: Path) -> None:
        for name, data in contents.items():
            write_bytes(staging / name, data)

    return replace_folder(Path(folder), write, what="checkpoint")


def _complete(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file() and (folder / MODEL_FILE).is_file()


def checkpoint_folder(folder: Path) -> Path:
    """The checkpoint to read for `folder`: itself, or `folder.old` after an interrupted write.

    Raises:
        CheckpointError: Neither holds a checkpoint.
    """
    found = existing_folder(Path(folder), _complete)
    if found is not None:
        return found
    if not Path(folder).exists():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    if (Path(folder) / SIMULATED_STATE_FILE).is_file():
        raise CheckpointError(f"{folder} is a simulated trial's checkpoint (a study launched "
                              "with --simulate): it holds no weights; train the configuration")
    raise CheckpointError(
        f"{folder} is not an mtl-tune checkpoint: {STATE_FILE} or {MODEL_FILE} is missing"
    )


def read_state(folder: Path) -> dict[str, Any]:
    """The run state recorded in a checkpoint (`trainer_state.json`)."""
    path = checkpoint_folder(folder) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); the checkpoint is damaged: "
                              "use another checkpoint or train again") from None
    missing = [k for k in ("config", "bert_config", "heads", "epochs_done") if k not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}; it was not written by mtl-tune")
    return state


def _verified_bytes(folder: Path, name: str, state: dict[str, Any],
                    record: str = STATE_FILE) -> bytes:
    """A checkpoint file's bytes, checked against the sha256 its `record` file holds."""
    path = folder / name
    data = path.read_bytes()
    recorded = state.get("sha256", {}).get(name)
    if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
        raise CheckpointError(
            f"{path} does not match the sha256 recorded in {record}: the file was changed "
            "or damaged after it was written; use another checkpoint or train again"
        )
    return data


def _weights(folder: Path, state: dict[str, Any], name: str = MODEL_FILE,
             record: str = STATE_FILE) -> dict[str, torch.Tensor]:
    try:
        return load(_verified_bytes(folder, name, state, record))
    except SafetensorError as err:
        raise CheckpointError(f"{folder / name} is not a readable safetensors file "
                              f"({err}); use another checkpoint or train again") from None


def _exported(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """An exported folder's record (heads.json) and its weights under the model's names."""
    path = folder / HEADS_CONFIG
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); export the checkpoint "
                              "again") from None
    if state.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path} has format {state.get('format')!r}, not "
                              f"{EXPORT_FORMAT!r}; export the checkpoint again with this version")
    encoder = _weights(folder, state, MODEL_FILE, HEADS_CONFIG)
    weights = {f"encoder.{k}": v for k, v in encoder.items()}
    return state, {**weights, **_weights(folder, state, HEADS_FILE, HEADS_CONFIG)}


def _misfit(folder: Path, err: RuntimeError) -> CheckpointError:
    first = str(err).strip().splitlines()[0:2]
    return CheckpointError(
        f"the weights in {folder / MODEL_FILE} do not fit the model its {STATE_FILE} "
        f"describes ({' '.join(first)}); the two files come from different runs"
    )


def _load_into(model: MultitaskBERT, weights: dict[str, torch.Tensor], folder: Path) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise _misfit(folder, err) from None


def check_compatible(folder: Path, config: TrainConfig, model: MultitaskBERT) -> None:
    """Refuses a checkpoint made with another backbone architecture or head layout (the heads'
    dropout is no part of it: a run may continue a checkpoint with another rate)."""
    state = read_state(folder)
    ours_bert, ours_heads = asdict(model.encoder.config), asdict(model.heads)
    # a key added after the checkpoint was written has the value it had before: the default
    their_heads = {**asdict(HeadConfig()), **state["heads"]}
    for heads in (ours_heads, their_heads):
        heads.pop("dropout", None)
    for label, theirs, ours in (
        ("backbone", state["bert_config"], ours_bert),
        ("head layout", their_heads, ours_heads),
    ):
        diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
        if diff:
            detail = ", ".join(
                f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items()
            )
            raise CheckpointError(f"checkpoint {folder} was made with another {label} ({detail})")


def has_optimizer_state(folder: Path) -> bool:
    """Whether a checkpoint can resume training (weights-only ones are for prediction)."""
    return (checkpoint_folder(folder) / OPTIMIZER_FILE).is_file()


def restore_trainer(trainer: Checkpointable, folder: Path) -> None:
    """Loads the checkpoint's state into `trainer` (`load_state_dict`, after `check_compatible`).

    Raises:
        CheckpointError: The checkpoint does not fit the trainer's model, a file does not match
            its recorded sha256, or it has no optimizer state (a finished run's checkpoint: it
            predicts, but cannot resume training).
    """
    folder = checkpoint_folder(folder)
    check_compatible(folder, trainer.config, trainer.model)
    if not has_optimizer_state(folder):
        raise CheckpointError(
            f"checkpoint {folder} has no {OPTIMIZER_FILE}: it holds the weights of a finished "
            "run (for prediction and reports), not the state to resume training from"
        )
    record = read_state(folder)
    weights = _weights(folder, record)
    try:
        trainer.load_state_dict({"model": weights})
    except RuntimeError as err:
        raise _misfit(folder, err) from None
    data = _verified_bytes(folder, OPTIMIZER_FILE, record)
    progress = Progress.from_record(record).record()
    try:
        saved = torch.load(io.BytesIO(data), map_location=trainer.device, weights_only=True)
        if "param_groups" in saved:  # written before the schedule was checkpointed: constant
            saved = {"optimizer": saved}
        # a checkpoint from before combinations had a state: a fresh one
        trainer.load_state_dict({"combination": {}, **saved, "progress": progress})
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{folder / OPTIMIZER_FILE} cannot be loaded into this run's optimizer ({err}); "
            f"resume with the config its {STATE_FILE} records (e.g. the same `combine`), or "
            "from another checkpoint"
        ) from None


def load_model(folder: Path) -> tuple[MultitaskBERT, WordPieceTokenizer, TrainConfig]:
    """Rebuilds a trained model, its tokenizer and its config from a checkpoint folder alone, or
    from a folder `mtl-tune export` wrote.

    Raises:
        CheckpointError: The folder is not a checkpoint, a file is damaged (sha256 or format),
            or its weights and its trainer_state.json do not fit each other.
    """
    if is_exported(folder):  # `mtl-tune export`'s folder: Hugging Face names, heads beside
        folder = Path(folder)
        state, weights = _exported(folder)
        source = str(folder / HEADS_CONFIG)
    else:
        folder = checkpoint_folder(folder)
        state = read_state(folder)
        weights = _weights(folder, state)
        source = str(folder / STATE_FILE)
    config = TrainConfig.from_mapping(state["config"], source=source)
    try:
        model = MultitaskBERT(
            BertModel(BertConfig(**state["bert_config"])), HeadConfig(**state["heads"])
        )
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source} describes no model this version can build ({err}); "
                              "it was written by another version or edited") from None
    _load_into(model, weights, folder)
    tokenizer = WordPieceTokenizer.from_pretrained(folder, max_length=config.max_length)
    return model.eval(), tokenizer, config


def predictions_json(predictions: dict[str, TaskPredictions]) -> str:
    """Per-example predictions as JSON: task -> {ids, predictions, labels}."""
    payload = {
        task: {
            "ids": list(p.ids),
            "predictions": p.predictions.tolist(),
            "labels": None if p.labels is None else p.labels.tolist(),
        }
        for task, p in predictions.items()
    }
    return json.dumps(payload)


def read_predictions(path: Path) -> dict[str, TaskPredictions]:
    """The per-example dev predictions a checkpoint holds (`predictions_json`'s format)."""
    try:
        payload = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); the checkpoint is damaged: "
                              "use another checkpoint") from None
    out = {}
    for task, p in payload.items():
        preds = np.asarray(p["predictions"])
        labels = None if p["labels"] is None else np.asarray(p["labels"])
        correct = None
        if labels is not None and TASKS[task].num_classes:
            correct = (preds == labels).astype(np.int8)
        out[task] = TaskPredictions(task, tuple(p["ids"]), preds, labels, correct)
    return out
