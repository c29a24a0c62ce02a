"""Task heads over sentence vectors: sentiment classes, a paraphrase logit, a similarity score.

Pair heads take either two sentence vectors (siamese encoding) or one joint vector (cross
encoding). The sentiment and paraphrase heads are linear, or with `hidden > 0` one hidden layer
(Linear, GELU, dropout, Linear) of that width. Similarity outputs live on the head's own scale,
given by `similarity_target`: `linear` and `cosine-relu` on the 0..5 label scale, `cosine` on
the cosine's (label / 5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtl_tune.platform.config import STS_HEADS, check_choice


def classifier(d_in: int, d_out: int, hidden: int, dropout: float) -> nn.Module:
    """A linear map `d_in -> d_out`, or with `hidden > 0` one GELU layer of that width between."""
    if hidden == 0:
        return nn.Linear(d_in, d_out)
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out)
    )


class SentimentHead(nn.Module):
    def __init__(self, hidden: int, num_classes: int, dropout: float, head_hidden: int = 0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier(hidden, num_classes, head_hidden, dropout)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(u))  # (B, classes)


class ParaphraseHead(nn.Module):
    """One logit: from [u; v] (siamese) or from the joint [CLS] a [SEP] b vector (cross)."""

    def __init__(self, hidden: int, dropout: float, siamese: bool, head_hidden: int = 0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier(2 * hidden if siamese else hidden, 1, head_hidden, dropout)

    def forward(self, u: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
        x = self.dropout(u) if v is None else torch.cat([self.dropout(u), self.dropout(v)], dim=-1)
        return self.classifier(x).squeeze(-1)  # (B,)


class SimilarityHead(nn.Module):
    """`linear`: 5 * w.[u; v]; `cosine`: cos(u, v); `cosine-relu`: 5 * ReLU(cos(u, v)).

    With a cross (joint) encoding there is one vector and no cosine to take: the head is linear
    and its output is squashed to the same range as the siamese head of that type.
    """

    def __init__(self, kind: str, hidden: int, dropout: float, siamese: bool) -> None:
        super().__init__()
        check_choice("sts_head", kind, STS_HEADS)
        self.kind, self.siamese = kind, siamese
        self.dropout = nn.Dropout(dropout)
        needs_linear = kind == "linear" or not siamese
        width = 2 * hidden if siamese else hidden
        self.regressor = nn.Linear(width, 1) if needs_linear else None

    def forward(self, u: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
        u = self.dropout(u)
        if v is not None:
            v = self.dropout(v)
            if self.kind != "linear":
                cos = F.cosine_similarity(u, v, dim=-1)
                return cos if self.kind == "cosine" else 5.0 * F.relu(cos)
            assert self.regressor is not None
            return 5.0 * self.regressor(torch.cat([u, v], dim=-1)).squeeze(-1)
        assert self.regressor is not None
        score = self.regressor(u).squeeze(-1)  # (B,)
        if self.kind == "linear":
            return 5.0 * score
        cos = torch.tanh(score)
        return cos if self.kind == "cosine" else 5.0 * F.relu(cos)


def similarity_target(kind: str, labels: torch.Tensor) -> torch.Tensor:
    """Maps 0..5 similarity labels onto the scale a head of `kind` predicts on."""
    return labels / 5.0 if kind == "cosine" else labels


def similarity_to_labels(kind: str, scores: torch.Tensor) -> torch.Tensor:
    """Maps a head's predictions back onto the 0..5 label scale (for prediction files)."""
    return scores * 5.0 if kind == "cosine" else scores
