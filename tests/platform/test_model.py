"""Tests of MultitaskBERT and its task heads (mtl_tune.platform.model, mtl_tune.platform.heads)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtl_tune.exceptions import DataError
from mtl_tune.platform.batches import Segment, make_batch
from mtl_tune.platform.bert import BertModel
from mtl_tune.platform.config import PAIR_ENCODINGS, POOLINGS, STS_HEADS, HeadConfig
from mtl_tune.platform.data import Examples
from mtl_tune.platform.heads import (
    ParaphraseHead,
    SimilarityHead,
    similarity_target,
    similarity_to_labels,
)
from mtl_tune.platform.model import MultitaskBERT
from mtl_tune.platform.splits import tokenize_split
from mtl_tune.platform.tokenizer import TokenBatch, WordPieceTokenizer

HIDDEN = 32  # tests.conftest.TINY_BERT
PAIRS = [
    ("a gripping , funny and moving film .", "a moving film ."),
    ("the cat sat .", "it 's not the worst movie ever , but it 's close to it ."),
    ("what is up ?", "nothing ."),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@functools.cache
def _tokenizer(folder: Path) -> WordPieceTokenizer:
    return WordPieceTokenizer.from_pretrained(folder)


def _model(folder: Path, **heads: Any) -> MultitaskBERT:
    torch.manual_seed(0)
    return MultitaskBERT(BertModel.from_pretrained(folder), HeadConfig(**heads)).eval()


def _segments(folder: Path, task: str, pair_encoding: str) -> tuple[Segment, ...]:
    texts = tuple(PAIRS) if task != "sst" else tuple((a,) for a, _ in PAIRS)
    examples = Examples(task, "dev", "mem", ("a", "b", "c"), texts, np.zeros(3, np.float32), ())
    split = tokenize_split(examples, _tokenizer(folder), pair_encoding)
    return make_batch(split, torch.arange(3)).segments


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("sts_head", STS_HEADS)
@pytest.mark.parametrize("pair_encoding", PAIR_ENCODINGS)
def test_output_shapes(
    tiny_bert_dir: Path, pair_encoding: str, sts_head: str, pooling: str
) -> None:
    model = _model(tiny_bert_dir, pair_encoding=pair_encoding, sts_head=sts_head, pooling=pooling)
    with torch.no_grad():
        sst = model.forward_task("sst", _segments(tiny_bert_dir, "sst", pair_encoding))
        para_segments = _segments(tiny_bert_dir, "para", pair_encoding)
        para = model.forward_task("para", para_segments)
        sts = model.forward_task("sts", _segments(tiny_bert_dir, "sts", pair_encoding))
    # siamese pairs come as two segments, cross pairs as one
    assert len(para_segments) == (2 if pair_encoding == "siamese" else 1)
    # sentiment gives five logits per row
    assert sst.shape == (3, 5)
    # paraphrase gives one logit per pair
    assert para.shape == (3,)
    # similarity gives one score per pair
    assert sts.shape == (3,)
    # every output is finite
    assert all(torch.isfinite(t).all() for t in (sst, para, sts))
    # the score lies in the head's range
    if sts_head == "cosine":
        assert sts.abs().max().item() <= 1.0 + 1e-6
    elif sts_head == "cosine-relu":
        assert sts.min().item() >= 0.0 and sts.max().item() <= 5.0 + 1e-5


def test_cfimdb_uses_sentiment_head_with_its_classes(tiny_bert_dir: Path) -> None:
    model = _model(tiny_bert_dir, sentiment_classes=2)
    with torch.no_grad():
        out = model.forward_task("cfimdb", _segments(tiny_bert_dir, "sst", "siamese"))
    # CFIMDB goes through the sentiment head, here with two classes
    assert out.shape == (3, 2)


def test_unknown_task(tiny_bert_dir: Path) -> None:
    model = _model(tiny_bert_dir)
    # a task the task table does not hold is refused by name (the same rule as for data files)
    with pytest.raises(DataError, match=r"task must be one of .*'sts'.*but got 'nli'"):
        model.forward_task("nli", _segments(tiny_bert_dir, "sst", "siamese"))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooling_ignores_padding(tiny_bert_dir: Path, pooling: str) -> None:
    model = _model(tiny_bert_dir, pooling=pooling)
    tokenizer = _tokenizer(tiny_bert_dir)
    short, long = "the cat sat .", "a much longer sentence that forces the short one to be padded ."
    batch = tokenizer.encode([short, long])
    alone = tokenizer.encode([short])
    # the short sentence really is padded in the batch
    assert batch.input_ids.shape[1] > alone.input_ids.shape[1]

    def segment(b: TokenBatch) -> Segment:
        ids = b.input_ids.long()
        mask = (torch.arange(ids.shape[1])[None, :] < b.lengths[:, None]).long()
        return Segment(ids, mask, b.token_type_ids.long())

    with torch.no_grad():
        padded = model.embed(segment(batch))[0]
        unpadded = model.embed(segment(alone))[0]
    # the sentence vector is the same padded or not, within 1e-5
    assert (padded - unpadded).abs().max().item() < 1e-5


def test_mean_pooling_is_masked_mean(tiny_bert_dir: Path) -> None:
    model = _model(tiny_bert_dir, pooling="mean")
    (segment,) = _segments(tiny_bert_dir, "sst", "siamese")
    with torch.no_grad():
        hidden = model.encoder(segment.input_ids, segment.attention_mask, segment.token_type_ids)[
            "last_hidden_state"
        ]
        pooled = model.embed(segment)
    n = segment.attention_mask.sum(dim=1).tolist()
    expected = torch.stack([hidden[i, : n[i]].mean(dim=0) for i in range(3)])
    # mean pooling averages the real tokens only
    torch.testing.assert_close(pooled, expected, atol=1e-6, rtol=1e-5)


def test_cls_and_pooler_vectors(tiny_bert_dir: Path) -> None:
    (segment,) = _segments(tiny_bert_dir, "sst", "siamese")
    with torch.no_grad():
        out = _model(tiny_bert_dir).encoder(
            segment.input_ids, segment.attention_mask, segment.token_type_ids
        )
        cls = _model(tiny_bert_dir, pooling="cls").embed(segment)
        pooler = _model(tiny_bert_dir, pooling="pooler").embed(segment)
    # cls pooling is the first position's hidden state
    torch.testing.assert_close(cls, out["last_hidden_state"][:, 0])
    # pooler pooling is BERT's tanh pooler output
    torch.testing.assert_close(pooler, out["pooler_output"])


def test_siamese_cosine_head_is_cosine_of_embeddings(tiny_bert_dir: Path) -> None:
    model = _model(tiny_bert_dir, sts_head="cosine", pooling="mean")
    a, b = _segments(tiny_bert_dir, "sts", "siamese")
    with torch.no_grad():
        score = model.predict_similarity(a, b)
        expected = F.cosine_similarity(model.embed(a), model.embed(b), dim=-1)
    # the siamese cosine head is the cosine of the two sentence vectors (eval: no dropout)
    torch.testing.assert_close(score, expected)


@pytest.mark.parametrize("siamese", [True, False])
def test_similarity_head_ranges(siamese: bool) -> None:
    torch.manual_seed(0)
    u, v = 10 * torch.randn(256, HIDDEN), 10 * torch.randn(256, HIDDEN)
    second = v if siamese else None
    cosine = SimilarityHead("cosine", HIDDEN, 0.0, siamese)(u, second)
    relu = SimilarityHead("cosine-relu", HIDDEN, 0.0, siamese)(u, second)
    # the cosine head's output lies in [-1, 1]
    assert cosine.min().item() >= -1.0 - 1e-6 and cosine.max().item() <= 1.0 + 1e-6
    # the cosine-relu head's output lies in [0, 5]
    assert relu.min().item() >= 0.0 and relu.max().item() <= 5.0 + 1e-5
    # both ranges are used: negative cosines, and zeros from the ReLU
    assert cosine.min().item() < 0.0 and (relu == 0).any()


def test_siamese_cosine_relu_is_five_relu_cosine() -> None:
    torch.manual_seed(1)
    u, v = torch.randn(8, HIDDEN), torch.randn(8, HIDDEN)
    out = SimilarityHead("cosine-relu", HIDDEN, 0.0, True)(u, v)
    # cosine-relu is 5 * ReLU(cos(u, v))
    torch.testing.assert_close(out, 5.0 * F.cosine_similarity(u, v, dim=-1).clamp(min=0))


def test_linear_heads_input_width() -> None:
    siamese = SimilarityHead("linear", HIDDEN, 0.0, True).regressor
    cross = SimilarityHead("linear", HIDDEN, 0.0, False).regressor
    # a siamese linear head reads [u; v], 2H wide; a cross one reads the joint vector, H wide
    assert siamese is not None and siamese.in_features == 2 * HIDDEN
    assert cross is not None and cross.in_features == HIDDEN
    # the siamese cosine head has no weights at all
    assert list(SimilarityHead("cosine", HIDDEN, 0.0, True).parameters()) == []
    # the paraphrase head likewise reads 2H (siamese) or H (cross)
    assert ParaphraseHead(HIDDEN, 0.0, True).classifier.in_features == 2 * HIDDEN
    assert ParaphraseHead(HIDDEN, 0.0, False).classifier.in_features == HIDDEN


def test_similarity_head_bad_kind() -> None:
    # an unknown similarity head is refused with the valid ones
    with pytest.raises(ValueError, match=r"sts_head must be one of \('linear', 'cosine', "
                       r"'cosine-relu'\), but got 'dot'"):
        SimilarityHead("dot", HIDDEN, 0.0, True)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dropout", -0.1, r"`0 <= dropout < 1` must hold, but got dropout=-0.1"),
        ("dropout", 1.0, r"`0 <= dropout < 1` must hold, but got dropout=1.0"),
        ("sts_head", "dot", r"sts_head must be one of \('linear', 'cosine', 'cosine-relu'\), "
         r"but got 'dot'"),
        ("pooling", "max", r"pooling must be one of \('pooler', 'cls', 'mean'\), but got 'max'"),
        ("pair_encoding", "joint", r"pair_encoding must be one of \('siamese', 'cross'\), "
         r"but got 'joint'"),
        ("sentiment_classes", 1, r"sentiment_classes must be at least 2, but got 1"),
    ],
)
def test_head_config_bad_values(field: str, value: Any, message: str) -> None:
    # a bad head setting is refused with the rule and the value
    with pytest.raises(ValueError, match=message):
        HeadConfig(**{field: value})


def test_head_config_defaults_are_the_papers() -> None:
    config = HeadConfig()
    # the defaults are the paper's setup: pooler, siamese, linear STS head, 5 classes
    assert (config.pooling, config.pair_encoding, config.sts_head, config.sentiment_classes) == (
        "pooler",
        "siamese",
        "linear",
        5,
    )


@pytest.mark.parametrize(
    ("kind", "scale"), [("linear", 1.0), ("cosine", 0.2), ("cosine-relu", 1.0)]
)
def test_similarity_scale_round_trip(kind: str, scale: float) -> None:
    labels = torch.tensor([0.0, 1.2, 2.5, 4.0, 5.0])
    target = similarity_target(kind, labels)
    # labels map to the head's scale (cosine: label / 5; the others keep 0..5)
    torch.testing.assert_close(target, labels * scale)
    # and back again
    torch.testing.assert_close(similarity_to_labels(kind, target), labels)


def test_parameter_groups_partition_the_model(tiny_bert_dir: Path) -> None:
    model = _model(tiny_bert_dir)
    shared = {id(p) for p in model.shared_parameters()}
    heads = {id(p) for p in model.head_parameters()}
    # encoder and head parameters do not overlap
    assert not shared & heads
    # together they are every trainable parameter
    assert shared | heads == {id(p) for p in model.parameters()}


def test_dropout_only_in_training(tiny_bert_dir: Path) -> None:
    model = _model(tiny_bert_dir, dropout=0.5)
    (segment,) = _segments(tiny_bert_dir, "sst", "siamese")
    with torch.no_grad():
        a, b = model.predict_sentiment(segment), model.predict_sentiment(segment)
        model.train()
        torch.manual_seed(0)
        c = model.predict_sentiment(segment)
    # evaluation is deterministic
    assert torch.equal(a, b)
    # training applies dropout, changing the logits
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("task", ["para", "sts"])
def test_pair_in_one_encoder_call_equals_two_calls(tiny_bert_dir: Path, task: str) -> None:
    model = _model(tiny_bert_dir, sts_head="cosine")
    texts = tuple(PAIRS)
    examples = Examples(task, "dev", "mem", ("a", "b", "c"), texts, np.zeros(3, np.float32), ())
    split = tokenize_split(examples, _tokenizer(tiny_bert_dir), "siamese")
    separate = make_batch(split, torch.arange(3)).segments
    joint = make_batch(split, torch.arange(3), joint=True).segments
    # the sentences of these pairs differ in length, so only the joint batch has one width
    assert separate[0].input_ids.shape != separate[1].input_ids.shape
    assert joint[0].input_ids.shape == joint[1].input_ids.shape
    with torch.no_grad():
        one_call = model.forward_task(task, joint)
        two_calls = model.forward_task(task, separate)
    # encoding both sentences in one call gives the same outputs (padding is masked)
    torch.testing.assert_close(one_call, two_calls, rtol=1e-5, atol=1e-5)


def test_hidden_layer_heads(tiny_bert_dir: Path) -> None:
    model = _model(tiny_bert_dir, head_hidden=16, dropout=0.0)
    # head_hidden adds one GELU layer of that width to the sentiment and paraphrase heads
    sentiment = model.sentiment.classifier
    assert isinstance(sentiment, torch.nn.Sequential)
    assert [m.out_features for m in sentiment if isinstance(m, torch.nn.Linear)] == [16, 5]
    assert model.paraphrase.classifier[0].in_features == 2 * HIDDEN
    segments = _segments(tiny_bert_dir, "sst", "siamese")
    u = model.embed(segments[0])
    first, _, _, last = sentiment
    assert torch.allclose(model.predict_sentiment(segments[0]), last(F.gelu(first(u))))
    # head_hidden 0 keeps today's linear heads (and their checkpoint keys)
    assert isinstance(_model(tiny_bert_dir).sentiment.classifier, torch.nn.Linear)
