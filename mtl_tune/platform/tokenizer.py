"""WordPiece tokenization through the `tokenizers` library, from a checkpoint's own vocabulary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from mtl_tune.exceptions import CheckpointError


@dataclass(frozen=True)
class TokenBatch:
    """A whole split, encoded: ids padded to the longest row, with each row's real length."""

    input_ids: torch.Tensor  # (N, L) int32
    token_type_ids: torch.Tensor  # (N, L) int8
    lengths: torch.Tensor  # (N,) int64


class WordPieceTokenizer:
    """Encodes sentences and sentence pairs as `[CLS] a [SEP]` / `[CLS] a [SEP] b [SEP]`."""

    def __init__(self, tokenizer: Tokenizer, max_length: int = 128) -> None:
        if max_length < 8:
            raise ValueError(f"max_length must be at least 8, but got {max_length}")
        self.max_length = max_length
        self._tok = tokenizer
        self._tok.no_padding()
        self._tok.enable_truncation(max_length, strategy="longest_first")
        self.pad_id = tokenizer.token_to_id("[PAD]")
        if self.pad_id is None:
            raise CheckpointError("the tokenizer's vocabulary has no [PAD] token")

    @classmethod
    def from_pretrained(cls, path: str | Path, max_length: int = 128) -> WordPieceTokenizer:
        """Loads `tokenizer.json` if the folder has one, else `vocab.txt`.

        With only `vocab.txt`, lower-casing follows `do_lower_case` in `tokenizer_config.json`
        (default True, as for uncased BERT).
        """
        folder = Path(path)
        if (folder / "tokenizer.json").is_file():
            return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), max_length)
        if (folder / "vocab.txt").is_file():
            lowercase = True
            config = folder / "tokenizer_config.json"
            if config.is_file():
                lowercase = bool(json.loads(config.read_text()).get("do_lower_case", True))
            wordpiece = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=lowercase)
            return cls(wordpiece._tokenizer, max_length)
        raise CheckpointError(f"model folder {folder} has neither tokenizer.json nor vocab.txt")

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> TokenBatch:
        """Encodes a whole split in one batch call.

        Args:
            texts: First (or only) sentences.
            pairs: Second sentences for a joint pair encoding, or None.

        Returns:
            A `TokenBatch` with token types 0 for the first segment and 1 for the second.
        """
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(
                f"texts and pairs must have the same length, but got ({len(texts)}, {len(pairs)})"
            )
        inputs: list = list(texts) if pairs is None else list(zip(texts, pairs, strict=True))
        encodings = self._tok.encode_batch(inputs)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(inputs))
        width = int(lengths.max()) if len(inputs) else 0
        ids = np.full((len(inputs), width), self.pad_id, dtype=np.int32)
        types = np.zeros((len(inputs), width), dtype=np.int8)
        for row, enc in enumerate(encodings):
            ids[row, : lengths[row]] = enc.ids
            types[row, : lengths[row]] = enc.type_ids
        return TokenBatch(torch.from_numpy(ids), torch.from_numpy(types), torch.from_numpy(lengths))
