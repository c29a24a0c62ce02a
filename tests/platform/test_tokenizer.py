"""Tests of the WordPiece tokenizer in mtl_tune.platform.tokenizer against transformers'."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from mtl_tune.exceptions import CheckpointError
from mtl_tune.platform.tokenizer import WordPieceTokenizer
from tests.conftest import minilm_path
from tests.helpers import need_module

FIRST = [
    "It's a GRIPPING, funny and moving film about naïve café owners in Zürich, whose lives "
    "intertwine unexpectedly over one long, hot summer.",
    "short",
    "the cat sat .",
    "what 's up ? (nothing) -- really... \\/ `` quoted ''",
]
SECOND = [
    "what 's up ?",
    "A much longer second sentence that goes on and on, well past the limit of sixteen tokens.",
    "a dog barked loudly at the mailman who was , frankly , terrified of it .",
    "x",
]


@pytest.fixture(scope="module")
def hf_tokenizer() -> Any:
    transformers = need_module("transformers", "pip install -e '.[test]'")
    return transformers.BertTokenizerFast.from_pretrained(str(minilm_path()))


@pytest.fixture(scope="module")
def vocab_only_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vocab-only")
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(minilm_path() / name, folder / name)
    return folder


def _rows(ids: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    return [row[: int(n)].tolist() for row, n in zip(ids, lengths, strict=True)]


@pytest.mark.parametrize("max_length", [16, 128])
def test_single_sentences_equal_transformers(hf_tokenizer: Any, max_length: int) -> None:
    ours = WordPieceTokenizer.from_pretrained(minilm_path(), max_length=max_length)
    batch = ours.encode(FIRST)
    theirs = hf_tokenizer(FIRST, truncation=True, max_length=max_length)
    # input ids (up to each row's length) equal BertTokenizerFast's
    assert _rows(batch.input_ids, batch.lengths) == theirs["input_ids"]
    # a single sentence has token type 0 throughout
    assert _rows(batch.token_type_ids, batch.lengths) == theirs["token_type_ids"]
    # lengths are the encoded lengths, capped at max_length
    assert batch.lengths.tolist() == [len(r) for r in theirs["input_ids"]]


@pytest.mark.parametrize("max_length", [16, 24, 128])
def test_pairs_equal_transformers_with_longest_first(hf_tokenizer: Any, max_length: int) -> None:
    ours = WordPieceTokenizer.from_pretrained(minilm_path(), max_length=max_length)
    batch = ours.encode(FIRST, SECOND)
    theirs = hf_tokenizer(FIRST, SECOND, truncation="longest_first", max_length=max_length)
    # pair input ids equal BertTokenizerFast's, truncation included
    assert _rows(batch.input_ids, batch.lengths) == theirs["input_ids"]
    # pair token types (0 for the first segment, 1 for the second) equal BertTokenizerFast's
    assert _rows(batch.token_type_ids, batch.lengths) == theirs["token_type_ids"]
    if max_length == 16:
        # long pairs really are truncated to exactly max_length
        assert batch.lengths.max().item() == 16


def test_padding_layout_and_dtypes() -> None:
    ours = WordPieceTokenizer.from_pretrained(minilm_path())
    batch = ours.encode(["a b c d e f", "a"])
    # the batch is padded to its longest row
    assert batch.input_ids.shape == (2, 8)
    # the short row is [CLS] a [SEP] then [PAD] (id 0 in MiniLM's vocabulary)
    assert batch.input_ids[1].tolist() == [101, 1037, 102, 0, 0, 0, 0, 0]
    # ids are int32, token types int8, lengths int64 (compact storage for whole splits)
    assert (batch.input_ids.dtype, batch.token_type_ids.dtype, batch.lengths.dtype) == (
        torch.int32,
        torch.int8,
        torch.int64,
    )


def test_vocab_txt_only_gives_same_ids(vocab_only_dir: Path) -> None:
    from_json = WordPieceTokenizer.from_pretrained(minilm_path(), max_length=16)
    from_vocab = WordPieceTokenizer.from_pretrained(vocab_only_dir, max_length=16)
    for pairs in (None, SECOND):
        a, b = from_json.encode(FIRST, pairs), from_vocab.encode(FIRST, pairs)
        # a folder with only vocab.txt encodes exactly like tokenizer.json (ids and types)
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(
            a.token_type_ids, b.token_type_ids
        )


@pytest.mark.parametrize("source", ["json", "vocab"])
def test_uppercase_equals_lowercase(source: str, vocab_only_dir: Path) -> None:
    folder = minilm_path() if source == "json" else vocab_only_dir
    tok = WordPieceTokenizer.from_pretrained(folder)
    upper = tok.encode(["THE MOVIE WAS GREAT , WASN'T IT ?"])
    lower = tok.encode(["the movie was great , wasn't it ?"])
    # the uncased vocabulary lower-cases its input
    assert torch.equal(upper.input_ids, lower.input_ids)


def test_do_lower_case_false_is_honoured(tmp_path: Path) -> None:
    shutil.copy(minilm_path() / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    tok = WordPieceTokenizer.from_pretrained(tmp_path)
    # with do_lower_case false, an uppercase word is not lower-cased (it becomes other pieces)
    assert tok.encode(["GREAT"]).input_ids.tolist() != tok.encode(["great"]).input_ids.tolist()


def test_folder_without_tokenizer_files(tmp_path: Path) -> None:
    # a folder with neither tokenizer.json nor vocab.txt is refused with its path
    with pytest.raises(CheckpointError, match=f"{tmp_path}.*neither tokenizer.json nor vocab.txt"):
        WordPieceTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("max_length", [0, 7])
def test_max_length_too_small(max_length: int) -> None:
    # room for [CLS] a [SEP] b [SEP] is required: max_length below 8 is refused
    with pytest.raises(ValueError, match=f"max_length must be at least 8, but got {max_length}"):
        WordPieceTokenizer.from_pretrained(minilm_path(), max_length=max_length)


def test_pairs_of_other_length_refused() -> None:
    tok = WordPieceTokenizer.from_pretrained(minilm_path())
    # texts and pairs must line up one to one
    with pytest.raises(ValueError, match=r"same length, but got \(2, 1\)"):
        tok.encode(["a", "b"], ["c"])


def test_empty_input_gives_empty_batch() -> None:
    batch = WordPieceTokenizer.from_pretrained(minilm_path()).encode([])
    # an empty split encodes to a (0, 0) batch instead of failing
    assert batch.input_ids.shape == (0, 0) and batch.lengths.shape == (0,)
