"""Tests of batch orders and dynamic padding in mtl_tune.platform.batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_tune.platform.batches import (
    CyclingBatches,
    bucketed_order,
    eval_order,
    make_batch,
    padding_fraction,
    shuffled_order,
)
from mtl_tune.platform.data import Examples, read_split
from mtl_tune.platform.splits import TaskSplit, tokenize_split
from mtl_tune.platform.tokenizer import WordPieceTokenizer
from tests.conftest import minilm_path

SENTENCES = [f"{' '.join(['word'] * n)} ." for n in (3, 9, 1, 14, 6, 2, 11, 5, 7, 4)]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def tokenizer() -> WordPieceTokenizer:
    return WordPieceTokenizer.from_pretrained(minilm_path(), max_length=64)


@pytest.fixture(scope="module")
def small_split(tokenizer: WordPieceTokenizer) -> TaskSplit:
    """Ten STS pairs of known, different lengths, labelled 0.0, 0.5, ..., 4.5."""
    examples = Examples(
        task="sts",
        split="train",
        path="mem",
        ids=tuple(f"id{i}" for i in range(10)),
        texts=tuple((s, SENTENCES[::-1][i]) for i, s in enumerate(SENTENCES)),
        labels=np.arange(10, dtype=np.float32) / 2,
        skipped=(),
    )
    return tokenize_split(examples, tokenizer, "siamese")


@pytest.fixture(scope="module")
def sst_lengths(tokenizer: WordPieceTokenizer, labeled_data: Path) -> torch.Tensor:
    examples = read_split(labeled_data / "ids-sst-train.csv", "sst", "train")
    return tokenize_split(examples, tokenizer).lengths


def _flat(batches: list[torch.Tensor]) -> list[int]:
    return sorted(torch.cat(batches).tolist())


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (100, 10), (1000, 32), (7, 50)])
def test_bucketed_order_covers_every_row_once(n: int, batch_size: int) -> None:
    lengths = torch.from_numpy(_rng(1).integers(3, 60, size=n))
    batches = bucketed_order(lengths, batch_size, _rng(), chunk_batches=4)
    # every row appears exactly once
    assert _flat(batches) == list(range(n))
    expected = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    # all batches are full but one that holds the remainder
    assert sorted(len(b) for b in batches) == sorted(expected)


def test_bucketed_order_is_seeded() -> None:
    lengths = torch.arange(200) % 37
    a = bucketed_order(lengths, 16, _rng(5))
    b = bucketed_order(lengths, 16, _rng(5))
    c = bucketed_order(lengths, 16, _rng(6))
    # the same seed gives the same batches
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    # another seed gives other batches
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=False))


def test_bucketing_halves_padding_on_real_sst(sst_lengths: torch.Tensor) -> None:
    n = len(sst_lengths)
    # the whole of SST train is there
    assert n == 7544
    bucketed = padding_fraction(bucketed_order(sst_lengths, 32, _rng()), sst_lengths)
    shuffled = padding_fraction(shuffled_order(n, 32, _rng()), sst_lengths)
    # bucketing pads at most half as much as plain shuffling (same seed, batch size 32)
    assert bucketed <= 0.5 * shuffled
    # and plain shuffling really does pad a lot on SST (the reason for bucketing)
    assert shuffled > 0.3


def test_shuffled_order_covers_every_row_once() -> None:
    batches = shuffled_order(23, 5, _rng())
    # every row once, in batches of 5 with a last one of 3
    assert _flat(batches) == list(range(23)) and [len(b) for b in batches] == [5, 5, 5, 5, 3]


def test_padding_fraction_by_hand() -> None:
    lengths = torch.tensor([2, 4, 3, 3])
    # batch [2, 4] holds 6 real of 8 slots, batch [3, 3] 6 of 6: 1 - 12/14
    assert padding_fraction([torch.tensor([0, 1]), torch.tensor([2, 3])], lengths) == (
        pytest.approx(1 - 12 / 14)
    )
    # no batches, no padding
    assert padding_fraction([], lengths) == 0.0


def test_make_batch_trims_and_masks(small_split: TaskSplit) -> None:
    rows = torch.tensor([2, 5, 0])  # short sentences first segment: 1, 2 and 3 words
    batch = make_batch(small_split, rows)
    first, second = batch.segments
    lengths = small_split.segments[0].lengths[rows]
    # the first segment is trimmed to its longest row in the batch
    assert first.input_ids.shape == (3, int(lengths.max()))
    # the attention mask is 1 exactly on each row's real tokens
    assert first.attention_mask.sum(dim=1).tolist() == lengths.tolist()
    assert first.attention_mask.tolist() == [
        [1] * n + [0] * (int(lengths.max()) - n) for n in lengths.tolist()
    ]
    # the real tokens are the split's own ids, padding positions are [PAD]
    for i, row in enumerate(rows.tolist()):
        n = int(lengths[i])
        own = small_split.segments[0].input_ids[row, :n]
        assert first.input_ids[i, :n].tolist() == own.tolist()
        assert (first.input_ids[i, n:] == 0).all()
    # each segment is trimmed on its own (the second segment holds the long sentences)
    assert second.input_ids.shape[1] == int(small_split.segments[1].lengths[rows].max())
    # tensors are long for the embedding layers
    assert {first.input_ids.dtype, first.attention_mask.dtype, first.token_type_ids.dtype} == {
        torch.long
    }
    # labels and rows follow the requested rows
    assert batch.labels is not None and batch.labels.tolist() == [1.0, 2.5, 0.0]
    assert batch.rows.tolist() == [2, 5, 0] and batch.size == 3 and batch.task == "sts"


def test_batch_to_device_keeps_values(small_split: TaskSplit) -> None:
    batch = make_batch(small_split, torch.tensor([1, 3]))
    moved = batch.to("cpu")
    # moving keeps every tensor's values
    assert torch.equal(moved.segments[1].input_ids, batch.segments[1].input_ids)
    assert moved.labels is not None and batch.labels is not None
    assert torch.equal(moved.labels, batch.labels)


def test_eval_order_sorted(small_split: TaskSplit) -> None:
    batches = eval_order(small_split.lengths, 4)
    order = torch.cat(batches)
    # every row once
    assert sorted(order.tolist()) == list(range(10))
    # rows are in nondecreasing length order
    lens = small_split.lengths[order].tolist()
    assert lens == sorted(lens)
    # batch sizes are 4, 4, 2
    assert [len(b) for b in batches] == [4, 4, 2]


def test_cycling_batches_cycle_and_reshuffle(small_split: TaskSplit) -> None:
    cycler = CyclingBatches(small_split, 3, _rng())
    # an epoch of 10 rows in batches of 3 is 4 batches
    assert len(cycler) == 4
    drawn = [cycler.next() for _ in range(12)]  # three times what one pass holds
    passes = [torch.cat([b.rows for b in drawn[i : i + 4]]) for i in (0, 4, 8)]
    # every pass sees every row exactly once
    assert all(sorted(p.tolist()) == list(range(10)) for p in passes)
    # a new pass is reshuffled, not a replay of the last one
    assert passes[0].tolist() != passes[1].tolist() and passes[1].tolist() != passes[2].tolist()
    # batches carry the split's labels for their rows
    assert all(
        b.labels is not None and b.labels.tolist() == (b.rows.float() / 2).tolist() for b in drawn
    )


def test_cycling_batches_seeded(small_split: TaskSplit) -> None:
    a = CyclingBatches(small_split, 3, _rng(9))
    b = CyclingBatches(small_split, 3, _rng(9))
    # the same seed draws the same batches
    assert [a.next().rows.tolist() for _ in range(9)] == [b.next().rows.tolist() for _ in range(9)]


@pytest.mark.parametrize("batch_size", [0, -2])
@pytest.mark.parametrize("maker", ["bucketed", "shuffled", "eval", "cycling"])
def test_bad_batch_size(maker: str, batch_size: int, small_split: TaskSplit) -> None:
    # every batch maker refuses a batch size below 1 with the same message
    with pytest.raises(ValueError, match=f"batch_size must be at least 1, but got {batch_size}"):
        if maker == "bucketed":
            bucketed_order(small_split.lengths, batch_size, _rng())
        elif maker == "shuffled":
            shuffled_order(10, batch_size, _rng())
        elif maker == "eval":
            eval_order(small_split.lengths, batch_size)
        else:
            CyclingBatches(small_split, batch_size, _rng())


def test_cycling_empty_split_refused(tokenizer: WordPieceTokenizer) -> None:
    empty = Examples("sst", "train", "mem", (), (), np.zeros(0, np.float32), ())
    split = tokenize_split(empty, tokenizer)
    # an empty split cannot feed endless batches
    with pytest.raises(ValueError, match="cannot draw batches from the empty sst train split"):
        CyclingBatches(split, 4, _rng())


def test_make_batch_rounds_widths_and_pads_pairs_jointly(small_split: TaskSplit) -> None:
    rows = torch.tensor([2, 5, 0])
    longest = max(int(s.lengths[rows].max()) for s in small_split.segments)
    batch = make_batch(small_split, rows, multiple=8, joint=True)
    first, second = batch.segments
    cap = max(seg.input_ids.shape[1] for seg in small_split.segments)
    rounded = min(-(-longest // 8) * 8, cap)
    # both sentences of a pair share one width: the longest row rounded up to the multiple
    assert first.input_ids.shape == second.input_ids.shape == (3, rounded)
    # the masks still cover each sentence's real tokens only
    for seg, tokens in zip(batch.segments, small_split.segments, strict=True):
        assert seg.attention_mask.sum(dim=1).tolist() == tokens.lengths[rows].tolist()


def test_rounded_width_never_exceeds_the_split(small_split: TaskSplit) -> None:
    rows = torch.arange(len(small_split))
    widest = small_split.segments[1].input_ids.shape[1]
    batch = make_batch(small_split, rows, multiple=1000)
    # a multiple larger than the tokenized width is capped at that width
    assert batch.segments[1].input_ids.shape[1] == widest


def test_cycling_batches_pass_multiple_and_joint(small_split: TaskSplit) -> None:
    cycler = CyclingBatches(small_split, 3, _rng(), multiple=4, joint=True)
    for _ in range(6):
        batch = cycler.next()
        widths = {s.input_ids.shape[1] for s in batch.segments}
        # every batch has one width for both sentences, a multiple of 4 (or the cap)
        assert len(widths) == 1
        width = widths.pop()
        assert width % 4 == 0 or width == small_split.segments[0].input_ids.shape[1]


def test_joint_pads_a_segment_tokenized_narrower(tokenizer: WordPieceTokenizer) -> None:
    texts = (("a long first sentence here .", "ok ."), ("short .", "no ."))
    examples = Examples("sts", "train", "mem", ("a", "b"), texts, np.zeros(2, np.float32), ())
    split = tokenize_split(examples, tokenizer, "siamese")
    first, second = (s.input_ids.shape[1] for s in split.segments)
    # the second sentences were tokenized narrower than the first
    assert second < first
    batch = make_batch(split, torch.tensor([0, 1]), joint=True)
    a, b = batch.segments
    # joint batches still give both sentences the longest row's width ...
    assert a.input_ids.shape == b.input_ids.shape == (2, first)
    # ... with the extra positions masked out and the real tokens kept
    assert b.attention_mask.sum(dim=1).tolist() == split.segments[1].lengths.tolist()
    assert b.input_ids[:, :second].tolist() == split.segments[1].input_ids.long().tolist()
