"""Tokenized splits: a task's split encoded once, one token batch per model input segment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from mtl_tune.platform.config import PAIR_ENCODINGS, check_choice
from mtl_tune.platform.data import Examples
from mtl_tune.platform.tasks import TASKS
from mtl_tune.platform.tokenizer import TokenBatch, WordPieceTokenizer


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


Splits = Mapping[str, Mapping[str, TaskSplit]]  # task -> split -> tokenized data


def tokenize_split(
    examples: Examples, tokenizer: WordPieceTokenizer, pair_encoding: str = "siamese"
) -> TaskSplit:
    """Tokenizes a split: sentence pairs each on their own (`siamese`) or jointly (`cross`)."""
    check_choice("pair_encoding", pair_encoding, PAIR_ENCODINGS)
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
