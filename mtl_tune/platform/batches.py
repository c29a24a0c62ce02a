"""Batches with dynamic padding: length-bucketed orders for training, sorted ones for evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mtl_tune.platform.splits import TaskSplit


@dataclass(frozen=True)
class Segment:
    """One model input, padded to the longest row of its batch."""

    input_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long
    token_type_ids: torch.Tensor  # (B, T) long

    def to(self, device: torch.device | str) -> Segment:
        return Segment(
            self.input_ids.to(device, non_blocking=True),
            self.attention_mask.to(device, non_blocking=True),
            self.token_type_ids.to(device, non_blocking=True),
        )


@dataclass(frozen=True)
class Batch:
    task: str
    rows: torch.Tensor  # (B,) indices into the split
    segments: tuple[Segment, ...]
    labels: torch.Tensor | None

    @property
    def size(self) -> int:
        return len(self.rows)

    def to(self, device: torch.device | str) -> Batch:
        labels = None if self.labels is None else self.labels.to(device, non_blocking=True)
        return Batch(self.task, self.rows, tuple(s.to(device) for s in self.segments), labels)


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, but got {batch_size}")


def make_batch(
    split: TaskSplit, rows: torch.Tensor, multiple: int = 1, joint: bool = False
) -> Batch:
    """Gathers `rows` of a tokenized split and trims every segment to its longest row.

    Args:
        split: The tokenized split.
        rows: Row indices into the split.
        multiple: Round each width up to a multiple of this (capped at the split's width), so a
            compiled encoder sees few distinct shapes.
        joint: Give all segments of a pair the same width, so the model can encode both
            sentences in one call.
    """
    common = max(int(seg.lengths[rows].max()) for seg in split.segments) if joint else 0
    cap = max(seg.input_ids.shape[1] for seg in split.segments)
    segments = []
    for seg in split.segments:
        lengths = seg.lengths[rows]
        width = common or int(lengths.max())
        width = min(-(-width // multiple) * multiple, cap if joint else seg.input_ids.shape[1])
        extra = max(width - seg.input_ids.shape[1], 0)  # a segment tokenized narrower: pad it
        ids = F.pad(seg.input_ids[rows, :width].long(), (0, extra))  # masked out below
        types = F.pad(seg.token_type_ids[rows, :width].long(), (0, extra))
        mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        segments.append(Segment(ids, mask, types))
    labels = None if split.labels is None else split.labels[rows]
    return Batch(split.task, rows, tuple(segments), labels)


def bucketed_order(
    lengths: torch.Tensor, batch_size: int, rng: np.random.Generator, chunk_batches: int = 50
) -> list[torch.Tensor]:
    """Training batches of similar lengths: shuffle, sort inside chunks, shuffle the batches.

    Sorting only inside chunks of `chunk_batches` batches keeps batches random across the data
    while cutting padding; the final order of batches is shuffled so lengths do not trend.
    """
    _check_batch_size(batch_size)
    perm = rng.permutation(len(lengths))
    chunk = batch_size * chunk_batches
    batches: list[torch.Tensor] = []
    lens = lengths.numpy()
    for start in range(0, len(perm), chunk):
        part = perm[start : start + chunk]
        part = part[np.argsort(lens[part], kind="stable")]
        batches.extend(
            torch.from_numpy(part[i : i + batch_size].copy())
            for i in range(0, len(part), batch_size)
        )
    return [batches[i] for i in rng.permutation(len(batches))]


def shuffled_order(n: int, batch_size: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """Plainly shuffled batches (the reference that bucketing is measured against)."""
    _check_batch_size(batch_size)
    perm = torch.from_numpy(rng.permutation(n))
    return list(perm.split(batch_size))


def eval_order(lengths: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """All rows sorted by length, so evaluation pads as little as possible."""
    _check_batch_size(batch_size)
    return list(torch.argsort(lengths, stable=True).split(batch_size))


class CyclingBatches:
    """Endless bucketed batches of one split: reshuffles whenever it runs out (cycle iterator).

    `multiple` and `joint` are passed to `make_batch`.
    """

    def __init__(
        self,
        split: TaskSplit,
        batch_size: int,
        rng: np.random.Generator,
        multiple: int = 1,
        joint: bool = False,
    ) -> None:
        _check_batch_size(batch_size)
        if len(split) == 0:
            raise ValueError(f"cannot draw batches from the empty {split.task} {split.split} split")
        self.split, self.batch_size, self.rng = split, batch_size, rng
        self.multiple, self.joint = multiple, joint
        self._lengths = split.lengths
        self._pending: Iterator[torch.Tensor] = iter(())

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def next(self) -> Batch:
        rows = next(self._pending, None)
        if rows is None:
            self._pending = iter(bucketed_order(self._lengths, self.batch_size, self.rng))
            rows = next(self._pending)
        return make_batch(self.split, rows, self.multiple, self.joint)


def padding_fraction(batches: list[torch.Tensor], lengths: torch.Tensor) -> float:
    """Share of padded positions over all batches: 1 - real tokens / (rows x longest row)."""
    real = padded = 0
    for rows in batches:
        lens = lengths[rows]
        real += int(lens.sum())
        padded += int(lens.max()) * len(rows)
    return 1.0 - real / padded if padded else 0.0
