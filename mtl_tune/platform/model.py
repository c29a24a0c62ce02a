"""MultitaskBERT: one minBERT encoder shared by the sentiment, paraphrase and similarity heads."""

from __future__ import annotations

import torch
from torch import nn

from mtl_tune.platform.batches import Segment
from mtl_tune.platform.bert import BertModel
from mtl_tune.platform.config import HeadConfig
from mtl_tune.platform.heads import ParaphraseHead, SentimentHead, SimilarityHead
from mtl_tune.platform.tasks import task_spec


class MultitaskBERT(nn.Module):
    def __init__(self, encoder: BertModel, heads: HeadConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = heads
        H, siamese = encoder.config.hidden_size, heads.pair_encoding == "siamese"
        self.sentiment = SentimentHead(
            H, heads.sentiment_classes, heads.dropout, heads.head_hidden
        )
        pair_p = heads.dropout if heads.pair_dropout else 0.0
        self.paraphrase = ParaphraseHead(H, pair_p, siamese, heads.head_hidden)
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
        """The output of the head the task table names for `task`."""
        head = task_spec(task).head
        if head == "sentiment":
            return self.predict_sentiment(segments[0])
        if head == "paraphrase":
            return self.predict_paraphrase(*segments)
        return self.predict_similarity(*segments)

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        heads = (self.sentiment, self.paraphrase, self.similarity)
        return [p for h in heads for p in h.parameters() if p.requires_grad]
