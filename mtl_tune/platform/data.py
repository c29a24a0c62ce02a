"""CS224N data files: locate them, read them by column name, skip and count dirty rows, tokenize.

The files are tab-separated with a header; columns are read by NAME because the course's
test-student files carry an extra leading column that shifts everything right.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtl_tune.exceptions import ConfigError, DataError
from mtl_tune.platform.tokenizer import TokenBatch, WordPieceTokenizer

logger = logging.getLogger(__name__)

DATA_ENV = "MTL_TUNE_DATA"
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class TaskSpec:
    prefix: str  # file name prefix in the data folder
    text_columns: tuple[str, ...]
    label_column: str
    num_classes: int  # 0 for the regression task (STS)
    label_range: tuple[float, float]


TASKS: dict[str, TaskSpec] = {
    "sst": TaskSpec("ids-sst", ("sentence",), "sentiment", 5, (0, 4)),
    "para": TaskSpec("quora", ("sentence1", "sentence2"), "is_duplicate", 2, (0, 1)),
    "sts": TaskSpec("sts", ("sentence1", "sentence2"), "similarity", 0, (0.0, 5.0)),
    "cfimdb": TaskSpec("ids-cfimdb", ("sentence",), "sentiment", 2, (0, 1)),
}
MAIN_TASKS = ("sst", "para", "sts")


def task_spec(task: str) -> TaskSpec:
    if task not in TASKS:
        raise DataError(f"task must be one of {tuple(TASKS)}, but got {task!r}")
    return TASKS[task]


@dataclass(frozen=True)
class Examples:
    """The rows of one split that could be used, and what was skipped (file line, reason)."""

    task: str
    split: str
    path: str
    ids: tuple[str, ...]
    texts: tuple[tuple[str, ...], ...]  # one tuple of sentences per row
    labels: np.ndarray | None  # None for an unlabeled (test-student) split
    skipped: tuple[tuple[int, str], ...]

    def __len__(self) -> int:
        return len(self.ids)


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """`data_dir` if given, else `$MTL_TUNE_DATA`; raises DataError when neither names a folder."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    if not chosen:
        raise DataError(
            f"no data folder given: pass --data-dir DIR or set {DATA_ENV} "
            "(or run `mtl-tune data fetch` to download the course's public files)"
        )
    folder = Path(chosen).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"data folder {folder} does not exist (from "
            f"{'--data-dir' if data_dir is not None else DATA_ENV}); "
            "point --data-dir or MTL_TUNE_DATA at a folder with the CS224N files"
        )
    return folder


def split_path(data_dir: Path, task: str, split: str) -> Path:
    """The file of a task's split: `<prefix>-<split>.csv`; for test also `-test-student.csv`.

    Raises:
        DataError: No such file; the message names the file, task, split and data setting.
    """
    spec = task_spec(task)
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, but got {split!r}")
    candidates = [data_dir / f"{spec.prefix}-{split}.csv"]
    if split == "test":
        candidates.append(data_dir / f"{spec.prefix}-test-student.csv")
    for path in candidates:
        if path.is_file():
            return path
    names = " or ".join(p.name for p in candidates)
    raise DataError(
        f"missing data file {candidates[0]} (task {task!r}, split {split!r}): expected {names} "
        f"in {data_dir}; set --data-dir or {DATA_ENV} to the folder that holds it, "
        "or give the file explicitly"
    )


def _normalise(text: str, pair: bool) -> str:
    # the course's loader: lower-case and strip; for sentence pairs it also split punctuation
    text = text.lower().strip()
    if pair:
        for mark in (".", "?", ",", "'"):
            text = text.replace(mark, " " + mark)
        text = " ".join(text.split())
    return text


def _parse_label(raw: str | None, spec: TaskSpec) -> float:
    text = (raw or "").strip()
    if not text:
        raise ValueError("empty label")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"non-numeric label {text!r}") from None
    low, high = spec.label_range
    if not low <= value <= high:  # also catches nan
        raise ValueError(f"label {text!r} outside {spec.label_range}")
    if spec.num_classes and value != int(value):
        raise ValueError(f"label {text!r} is not a whole class index")
    return value


def _parse_row(
    row: Mapping[str, str | None], spec: TaskSpec, pair: bool, labeled: bool
) -> tuple[str, tuple[str, ...], float]:
    """One row's id, normalised sentences and label; ValueError naming every problem of the row."""
    problems: list[str] = []
    row_id = (row.get("id") or "").strip()
    if not row_id:
        problems.append("empty id")
    row_texts = tuple(_normalise(row.get(c) or "", pair) for c in spec.text_columns)
    # an unlabeled (leaderboard) split keeps empty sentences: every input id needs a prediction
    problems.extend(
        f"empty {column}"
        for column, text in zip(spec.text_columns, row_texts, strict=True)
        if not text and labeled
    )
    label = 0.0
    if labeled:
        try:
            label = _parse_label(row.get(spec.label_column), spec)
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise ValueError("; ".join(problems))
    return row_id, row_texts, label


def read_split(
    path: str | Path,
    task: str,
    split: str,
    strict: bool = False,
    max_examples: int | None = None,
) -> Examples:
    """Reads one CS224N split file by column name.

    Rows with an empty or unparseable label, an empty sentence or an empty id are skipped and
    counted, with one warning per file listing file:line of each; `strict=True` raises instead.

    Args:
        path: The tab-separated file.
        task: One of `TASKS`.
        split: "train", "dev" or "test"; only a test split may lack the label column.
        strict: Raise DataError on the first dirty row instead of skipping it.
        max_examples: Keep a random subset of this size (seed 0, the same for every run), in
            file order; None keeps every row.

    Returns:
        The usable rows as `Examples`.
    """
    spec = task_spec(task)
    if max_examples is not None and max_examples < 0:
        raise ConfigError(f"max_examples must be >= 0 or None, but got {max_examples}")
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"missing data file {path} (task {task!r}, split {split!r}); "
            f"check the path, or set --data-dir or {DATA_ENV} to the folder that holds it"
        )
    pair = len(spec.text_columns) == 2
    ids: list[str] = []
    texts: list[tuple[str, ...]] = []
    labels: list[float] = []
    skipped: list[tuple[int, str]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        header = reader.fieldnames or []
        needed = ("id", *spec.text_columns)
        absent = [c for c in needed if c not in header]
        if absent:
            raise DataError(
                f"{path}:1: header lacks column(s) {absent} for task {task!r}; "
                f"the header has {header}"
            )
        labeled = spec.label_column in header
        if not labeled and split != "test":
            raise DataError(
                f"{path}:1: the {split} split needs a {spec.label_column!r} column; "
                f"the header has {header}"
            )
        for row in reader:
            line = reader.line_num
            try:
                row_id, row_texts, label = _parse_row(row, spec, pair, labeled)
            except ValueError as err:
                if strict:
                    raise DataError(f"{path}:{line}: {err} (task {task!r}, strict mode)") from None
                skipped.append((line, str(err)))
                continue
            ids.append(row_id.lower())
            texts.append(row_texts)
            labels.append(label)
    if skipped:
        where = ", ".join(f"{path.name}:{line} ({why})" for line, why in skipped)
        logger.warning("%s: skipped %d row(s): %s", path, len(skipped), where)
    order = np.arange(len(ids))
    if max_examples is not None and max_examples < len(ids):
        order = np.sort(np.random.default_rng(0).permutation(len(ids))[:max_examples])
    label_array = np.asarray(labels, dtype=np.float32)[order] if labeled else None
    return Examples(
        task=task,
        split=split,
        path=str(path),
        ids=tuple(ids[i] for i in order),
        texts=tuple(texts[i] for i in order),
        labels=label_array,
        skipped=tuple(skipped),
    )


@dataclass(frozen=True)
class TaskSplit:
    """A split tokenized once: one `TokenBatch` per model input segment."""

    task: str
    split: str
    path: str
    ids: tuple[str, ...]
    labels: torch.Tensor | None  # long for classification, float for STS
    segments: tuple[TokenBatch, ...]  # 1 for single sentences or a cross pair, 2 for siamese

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> torch.Tensor:
        """Per-row length that sets padding: the longest segment of the row."""
        return torch.stack([s.lengths for s in self.segments]).amax(dim=0)


def tokenize_split(
    examples: Examples, tokenizer: WordPieceTokenizer, pair_encoding: str = "siamese"
) -> TaskSplit:
    """Tokenizes a split: sentence pairs each on their own (`siamese`) or jointly (`cross`)."""
    if pair_encoding not in ("siamese", "cross"):
        raise ValueError(f"pair_encoding must be 'siamese' or 'cross', but got {pair_encoding!r}")
    width = len(TASKS[examples.task].text_columns)
    columns = list(zip(*examples.texts, strict=True)) if len(examples) else [()] * width
    if len(columns) == 1:
        segments: tuple[TokenBatch, ...] = (tokenizer.encode(columns[0]),)
    elif pair_encoding == "cross":
        segments = (tokenizer.encode(columns[0], columns[1]),)
    else:
        segments = (tokenizer.encode(columns[0]), tokenizer.encode(columns[1]))
    labels = None
    if examples.labels is not None:
        as_float = TASKS[examples.task].num_classes == 0
        labels = torch.from_numpy(examples.labels)
        labels = labels.float() if as_float else labels.long()
    return TaskSplit(examples.task, examples.split, examples.path, examples.ids, labels, segments)


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how much of it to use."""

    data_dir: str | None = None  # None: $MTL_TUNE_DATA
    tasks: tuple[str, ...] = MAIN_TASKS
    splits: tuple[str, ...] = ("train", "dev")
    max_examples: int | None = None  # per task and split; None: all
    strict: bool = False
    files: tuple[tuple[str, str, str], ...] = ()  # explicit (task, split, path) overrides


def read_splits(config: DataConfig) -> dict[str, dict[str, Examples]]:
    """Reads every (task, split) of `config`: task -> split -> Examples."""
    explicit = {(task, split): path for task, split, path in config.files}
    covered = all((t, s) in explicit for t in config.tasks for s in config.splits)
    data_dir = None if covered else resolve_data_dir(config.data_dir)
    out: dict[str, dict[str, Examples]] = {}
    for task in config.tasks:
        task_spec(task)
        out[task] = {}
        for split in config.splits:
            if (task, split) in explicit:
                path = Path(explicit[(task, split)])
            else:
                assert data_dir is not None
                path = split_path(data_dir, task, split)
            limit = config.max_examples if split != "test" else None
            out[task][split] = read_split(path, task, split, config.strict, limit)
    return out


def tokenize_splits(
    examples: Mapping[str, Mapping[str, Examples]],
    tokenizer: WordPieceTokenizer,
    pair_encoding: str,
) -> dict[str, dict[str, TaskSplit]]:
    return {
        task: {
            split: tokenize_split(ex, tokenizer, pair_encoding) for split, ex in by_split.items()
        }
        for task, by_split in examples.items()
    }


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

