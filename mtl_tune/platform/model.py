"""MultitaskBERT: one minBERT encoder shared by the sentiment, paraphrase and similarity heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mtl_tune.platform.batches import Segment
from mtl_tune.platform.bert import BertModel
from mtl_tune.platform.heads import STS_HEADS, ParaphraseHead, SentimentHead, SimilarityHead

POOLINGS = ("pooler", "cls", "mean")
PAIR_ENCODINGS = ("siamese", "cross")


@dataclass(frozen=True)
class HeadConfig:
    dropout: float = 0.1  # on the sentence vectors, inside the heads
    pair_dropout: bool = True  # False: no dropout in the paraphrase/STS heads (paper iteration 1)
    sts_head: str = "linear"
    pooling: str = "pooler"  # the paper used BERT's tanh pooler
    pair_encoding: str = "siamese"  # the paper encoded each sentence of a pair on its own
    sentiment_classes: int = 5

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"0 <= dropout < 1 must hold, but got dropout={self.dropout}")
        if self.sentiment_classes < 2:
            raise ValueError(
                f"sentiment_classes must be at least 2, but got {self.sentiment_classes}"
            )
        for name, allowed in (
            ("sts_head", STS_HEADS),
            ("pooling", POOLINGS),
            ("pair_encoding", PAIR_ENCODINGS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, but got {value!r}")


class MultitaskBERT(nn.Module):
    def __init__(self, encoder: BertModel, heads: HeadConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = heads
        H, siamese = encoder.config.hidden_size, heads.pair_encoding == "siamese"
        self.sentiment = SentimentHead(H, heads.sentiment_classes, heads.dropout)
        pair_p = heads.dropout if heads.pair_dropout else 0.0
        self.paraphrase = ParaphraseHead(H, pair_p, siamese)
        self.similarity = SimilarityHead(heads.sts_head, H, pair_p, siamese)

    def embed(self, segment: Segment) -> torch.Tensor:
        """The sentence vector of each row, (B, H), by the configured pooling."""
        out = self.encoder(segment.input_ids, segment.attention_mask, segment.token_type_ids)
        if self.heads.pooling == "pooler":
            return out["pooler_output"]
        hidden = out["last_hidden_state"]  # (B, T, H)
        if self.heads.pooling == "cls":
            return hidden[:, 0]
        mask = segment.attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def _pair(self, segments: tuple[Segment, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if len(segments) == 1:
            return self.embed(segments[0]), None
        a, b = segments
        if a.input_ids.shape != b.input_ids.shape:
            return self.embed(a), self.embed(b)
        # equal widths: both sentences in one encoder call (half the kernel launches)
        both = Segment(
            torch.cat([a.input_ids, b.input_ids]),
            torch.cat([a.attention_mask, b.attention_mask]),
            torch.cat([a.token_type_ids, b.token_type_ids]),
        )
        u, v = self.embed(both).chunk(2)  # (B, H) each
        return u, v

    def predict_sentiment(self, segment: Segment) -> torch.Tensor:
        """Class logits, (B, sentiment_classes)."""
        return self.sentiment(self.embed(segment))

    def predict_paraphrase(self, *segments: Segment) -> torch.Tensor:
        """One logit per pair, (B,); two segments (siamese) or one joint segment (cross)."""
        return self.paraphrase(*self._pair(segments))

    def predict_similarity(self, *segments: Segment) -> torch.Tensor:
        """One similarity score per pair, (B,), on the scale of the configured STS head."""
        return self.similarity(*self._pair(segments))

    def forward_task(self, task: str, segments: tuple[Segment, ...]) -> torch.Tensor:
        if task in ("sst", "cfimdb"):
            return self.predict_sentiment(segments[0])
        if task == "para":
            return self.predict_paraphrase(*segments)
        if task == "sts":
            return self.predict_similarity(*segments)
        raise ValueError(f"task must be one of ('sst', 'para', 'sts', 'cfimdb'), but got {task!r}")

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        heads = (self.sentiment, self.paraphrase, self.similarity)
        return [p for h in heads for p in h.parameters() if p.requires_grad]
