"""Predict a split with a trained checkpoint: score it if labeled, else write leaderboard files.

The output files follow the course's format exactly (`sst-test-output.csv` etc.): a header line
`id \\t Predicted_Sentiment`, then one `id , prediction` row per input id.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from mtl_tune.exceptions import DataError, MissingDataFile
from mtl_tune.platform.atomic import replace_folder, write_bytes
from mtl_tune.platform.checkpoint import load_model
from mtl_tune.platform.data import read_split
from mtl_tune.platform.data_files import split_path
from mtl_tune.platform.device import resolve_device
from mtl_tune.platform.evaluate import TaskPredictions, predict_split, score, task_scores
from mtl_tune.platform.out_folder import OutputKind, check_out
from mtl_tune.platform.splits import tokenize_split
from mtl_tune.platform.tasks import MAIN_TASKS, TASKS

logger = logging.getLogger(__name__)
SCORES_FILE = "scores.json"
MANIFEST_FILE = "predictions.json"  # what was predicted with what: marks a predictions folder
SPLITS = ("dev", "test", "train")

@dataclass(frozen=True)
class SplitPredictions:
    split: str
    predictions: dict[str, TaskPredictions]  # the tasks whose file was found
    metrics: dict[str, float] | None  # when all three main tasks are labeled
    task_scores: dict[str, float]  # per labeled task: accuracy or Pearson
    files: dict[str, Path]  # task -> its course-format file; "scores", "manifest" -> theirs
    missing: dict[str, str]  # task -> why it was skipped (the file it looked for)


def output_name(task: str, split: str) -> str:
    return f"{task}-{split}-output.csv"


def _owned(name: str) -> bool:
    outputs = {output_name(t, s) for t in MAIN_TASKS for s in SPLITS}
    return name in outputs or name in (SCORES_FILE, MANIFEST_FILE)


PREDICTIONS_KIND = OutputKind("predict", "predictions", MANIFEST_FILE, _owned)


def write_course_file(path: Path, predictions: TaskPredictions) -> None:
    """Writes one course-format prediction file (header, then `id , prediction` rows)."""
    lines = [f"id \t {TASKS[predictions.task].output_header} \n"]
    values = predictions.predictions
    for row_id, value in zip(predictions.ids, values.tolist(), strict=True):
        lines.append(f"{row_id} , {value} \n")
    write_bytes(path, "".join(lines).encode("utf-8"))


def predict_data(
    checkpoint: Path,
    data_dir: Path,
    split: str,
    out: Path | None,
    batch_size: int = 128,
    device: str = "auto",
    force: bool = False,
    study: Path | None = None,
) -> SplitPredictions:
    """Runs a checkpoint over the three main tasks' `split` files found in `data_dir`.

    A task whose file is absent is skipped with a notice; the others are still predicted.

    Args:
        checkpoint: A checkpoint folder written by `mtl-tune train` or a study trial.
        data_dir: The data folder to look for `<prefix>-<split>.csv` (or `-test-student.csv`).
        split: "dev" or "test" (or "train").
        out: Folder for the course-format output files, written whole; None writes nothing.
        batch_size: Evaluation batch size.
        device: "auto", "cpu" or "cuda".
        force: Replace earlier predictions at `out` (a folder holding anything else is refused).
        study: The study folder the checkpoint lies in, if any: `out` may not overlap it.

    Returns:
        Per-task predictions, the metrics of the labeled tasks and the files written.

    Raises:
        MtlTuneError: `out` is refused (`out_folder.check_out`); it is checked before anything
            is read.
    """
    if out is not None:
        inputs = {"checkpoint": checkpoint, "data folder": data_dir, "study": study}
        out = check_out(out, PREDICTIONS_KIND, inputs, force)
    model, tokenizer, config = load_model(checkpoint)
    torch_device = resolve_device(device)
    model.to(torch_device)
    predictions: dict[str, TaskPredictions] = {}
    missing: dict[str, str] = {}
    for task in MAIN_TASKS:
        try:
            path = split_path(data_dir, task, split)
        except MissingDataFile as err:  # a file that exists but cannot be used is an error
            logger.info("skipping %s: %s", task, err)
            missing[task] = str(err)
            continue
        examples = read_split(path, task, split)
        tokenized = tokenize_split(examples, tokenizer, config.pair_encoding)
        with torch.inference_mode():
            predictions[task] = predict_split(model, tokenized, batch_size, torch_device)
    if not predictions:
        raise DataError(f"no {split} file of any task was found in {data_dir}")
    labeled = {t: p for t, p in predictions.items() if p.labels is not None}
    metrics = score(labeled) if len(labeled) == len(MAIN_TASKS) else None
    scores = task_scores(labeled)
    files: dict[str, Path] = {}
    if out is not None:
        files = {task: out / output_name(task, split) for task in predictions}
        if scores:
            files["scores"] = out / SCORES_FILE
        manifest = {"checkpoint": str(Path(checkpoint).resolve()), "split": split,
                    "data_dir": str(Path(data_dir).resolve()),
                    "files": sorted(p.name for p in files.values())}
        files["manifest"] = out / MANIFEST_FILE

        def write(staging: Path) -> None:
            for task, p in predictions.items():
                write_course_file(staging / output_name(task, split), p)
            if scores:
                write_bytes(staging / SCORES_FILE,
                            json.dumps(metrics or scores, indent=2).encode())
            write_bytes(staging / MANIFEST_FILE, json.dumps(manifest, indent=2).encode())

        replace_folder(out, write, what="predictions")
    return SplitPredictions(split, predictions, metrics, scores, files, missing)

