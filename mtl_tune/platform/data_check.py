"""`mtl-tune data check`: every file of a data folder read as training would read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtl_tune.exceptions import DataError, MissingDataFile
from mtl_tune.platform.data import Examples, read_split
from mtl_tune.platform.data_files import SPLITS, split_path
from mtl_tune.platform.tasks import TASKS


@dataclass(frozen=True)
class FileCheck:
    task: str
    split: str
    status: str  # "ok", "missing" or "error"
    file: str  # the file's name ("-" when none was found)
    read: int  # rows read, skipped ones included
    skipped: int
    labels: str  # the label distribution, "unlabeled", or "-"
    problem: str | None  # the error's message


def check_data(folder: Path) -> list[FileCheck]:
    """One check per task and split, in the task table's order; nothing is raised."""
    checks = []
    for task in TASKS:
        for split in SPLITS:
            name = "-"
            try:
                path = split_path(folder, task, split)
                name = path.name
                examples = read_split(path, task, split)
            except DataError as err:
                status = "missing" if isinstance(err, MissingDataFile) else "error"
                name = Path(str(err.path)).name if err.path is not None else name
                checks.append(FileCheck(task, split, status, name, 0, 0, "-", str(err)))
                continue
            skipped = len(examples.skipped)
            checks.append(FileCheck(task, split, "ok", name, len(examples) + skipped, skipped,
                                    label_distribution(examples), None))
    return checks


def label_distribution(examples: Examples) -> str:
    """A one-line summary: class counts, or for STS the mean and the count per integer bin."""
    if examples.labels is None:
        return "unlabeled"
    spec = TASKS[examples.task]
    if spec.num_classes:
        values, counts = np.unique(examples.labels.astype(int), return_counts=True)
        return " ".join(f"{v}:{c}" for v, c in zip(values, counts, strict=True))
    bins = np.bincount(np.minimum(examples.labels, 4.999).astype(int), minlength=5)
    return f"mean {examples.labels.mean():.2f}; " + " ".join(
        f"[{b},{b + 1}):{c}" for b, c in enumerate(bins)
    )

