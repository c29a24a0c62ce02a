"""Tests of the task metrics (mtl_tune.platform.metrics) and of mtl_tune.platform.evaluate."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mtl_tune.platform import metrics
from mtl_tune.platform.batches import make_batch
from mtl_tune.platform.bert import BertModel
from mtl_tune.platform.config import HeadConfig
from mtl_tune.platform.data import read_split
from mtl_tune.platform.data_files import split_path
from mtl_tune.platform.evaluate import TaskPredictions, evaluate, predict_split, score
from mtl_tune.platform.model import MultitaskBERT
from mtl_tune.platform.splits import TaskSplit, tokenize_split
from mtl_tune.platform.tokenizer import WordPieceTokenizer
from tests.conftest import ORIGINAL

CPU = torch.device("cpu")
# the paper's iteration 1 (DESIGN.md): SST acc, paraphrase acc, STS Pearson r
PAPER = (0.391, 0.380, -0.009)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------- metrics


def test_accuracy_by_hand() -> None:
    # accuracy is the share of equal entries: 3 of 4
    assert metrics.accuracy(np.array([0, 1, 2, 3]), np.array([0, 1, 2, 4])) == 0.75
    # predictions as int and labels as float compare by value
    assert metrics.accuracy(np.array([1, 0]), np.array([1.0, 0.0])) == 1.0


def test_pearson_equals_numpy_corrcoef() -> None:
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, size=200)
    predictions = labels + rng.normal(0, 2, size=200)
    # Pearson's r equals numpy's correlation coefficient
    assert metrics.pearson(predictions, labels) == pytest.approx(
        np.corrcoef(predictions, labels)[0, 1], abs=1e-12
    )
    # a perfectly anti-correlated prediction gives -1
    assert metrics.pearson(-labels, labels) == pytest.approx(-1.0)


@pytest.mark.parametrize("constant", ["predictions", "labels"])
def test_pearson_constant_is_zero(constant: str, caplog: pytest.LogCaptureFixture) -> None:
    varying = np.array([0.0, 1.0, 2.5, 4.0])
    flat = np.full(4, 2.0)
    args = (flat, varying) if constant == "predictions" else (varying, flat)
    with caplog.at_level(logging.WARNING, logger="mtl_tune.platform.metrics"):
        r = metrics.pearson(*args)
    # r is undefined for constant inputs and reported as 0.0, not nan
    assert r == 0.0
    # with a warning that says so
    assert "Pearson r undefined, reported as 0.0" in caplog.text


@pytest.mark.parametrize(
    ("fn", "predictions", "labels", "message"),
    [
        (metrics.accuracy, [1, 0, 1], [1, 0], r"non-empty and of equal length, but got \(3, 2\)"),
        (metrics.accuracy, [], [], r"non-empty and of equal length, but got \(0, 0\)"),
        (metrics.pearson, [1.0, 2.0], [1.0, 2.0, 3.0], r"equal length >= 2, but got \(2, 3\)"),
        (metrics.pearson, [1.0], [1.0], r"equal length >= 2, but got \(1, 1\)"),
    ],
)
def test_length_mismatch(
    fn: Callable[[np.ndarray, np.ndarray], float],
    predictions: list[float],
    labels: list[float],
    message: str,
) -> None:
    # mismatched or too short inputs are refused with both lengths
    with pytest.raises(ValueError, match=message):
        fn(np.asarray(predictions), np.asarray(labels))


def test_overall_and_mean_score_on_the_papers_numbers() -> None:
    sst, para, sts = PAPER
    # the leaderboard's overall maps r from [-1, 1] onto [0, 1] before averaging
    assert metrics.overall(sst, para, sts) == pytest.approx((0.391 + 0.380 + (-0.009 + 1) / 2) / 3)
    # ... which is 0.4222 for iteration 1
    assert round(metrics.overall(sst, para, sts), 4) == 0.4222
    # the paper's "Overall" column is the plain mean: 0.254 rounded
    assert round(metrics.mean_score(sst, para, sts), 3) == 0.254
    # summary reports all five under their names, in order
    summary = metrics.summary(sst, para, sts)
    assert tuple(summary) == metrics.METRIC_KEYS
    assert summary == {
        "sst_acc": 0.391,
        "para_acc": 0.380,
        "sts_corr": -0.009,
        "overall": metrics.overall(sst, para, sts),
        "mean_score": metrics.mean_score(sst, para, sts),
    }


@pytest.mark.parametrize(
    ("scores", "overall", "mean"),
    [((1.0, 1.0, 1.0), 1.0, 1.0), ((0.0, 0.0, -1.0), 0.0, -1 / 3), ((0.5, 0.5, 0.0), 0.5, 1 / 3)],
)
def test_score_extremes(scores: tuple[float, float, float], overall: float, mean: float) -> None:
    # perfect scores give 1; the worst give 0 overall (r = -1 maps to 0)
    assert metrics.overall(*scores) == pytest.approx(overall)
    # the plain mean is not rescaled
    assert metrics.mean_score(*scores) == pytest.approx(mean)


# ---------------------------------------------------------------------------- evaluation


def _model(folder: Path, **heads: Any) -> MultitaskBERT:
    torch.manual_seed(0)
    return MultitaskBERT(BertModel.from_pretrained(folder), HeadConfig(**heads))


@pytest.fixture(scope="module")
def dev_splits(tiny_data_dir: Path, tiny_bert_dir: Path) -> dict[str, TaskSplit]:
    tokenizer = WordPieceTokenizer.from_pretrained(tiny_bert_dir, max_length=64)
    return {
        task: tokenize_split(
            read_split(split_path(tiny_data_dir, task, "dev"), task, "dev"), tokenizer
        )
        for task in ("sst", "para", "sts")
    }


def test_evaluate_metrics_match_hand_recomputation(
    tiny_bert_dir: Path, dev_splits: dict[str, TaskSplit]
) -> None:
    model = _model(tiny_bert_dir)
    model.train()
    result = evaluate(model, dev_splits, batch_size=8, device=CPU)
    # the metrics are the five reported keys
    assert tuple(result.metrics) == metrics.METRIC_KEYS
    # the model is handed back in the mode it came in
    assert model.training
    preds = result.predictions
    for task in ("sst", "para"):
        p = preds[task]
        assert p.labels is not None and p.correct is not None
        # the labels are the split's own, in row order
        split_labels = dev_splits[task].labels
        assert split_labels is not None and np.array_equal(p.labels, split_labels.numpy())
        # per-example correctness is prediction == label
        assert np.array_equal(p.correct, (p.predictions == p.labels).astype(np.int8))
    # accuracies equal a recount from the returned predictions
    assert result.metrics["sst_acc"] == np.mean(preds["sst"].predictions == preds["sst"].labels)
    assert result.metrics["para_acc"] == np.mean(preds["para"].predictions == preds["para"].labels)
    # the STS correlation equals numpy's on the returned predictions
    assert result.metrics["sts_corr"] == pytest.approx(
        np.corrcoef(preds["sts"].predictions, preds["sts"].labels)[0, 1], abs=1e-6
    )
    # overall and mean_score are computed from those three
    m = result.metrics
    assert m["overall"] == pytest.approx(
        metrics.overall(m["sst_acc"], m["para_acc"], m["sts_corr"])
    )
    assert m["mean_score"] == pytest.approx(
        metrics.mean_score(m["sst_acc"], m["para_acc"], m["sts_corr"])
    )
    # score() on the returned predictions gives the same metrics
    assert score(preds) == result.metrics


# a random tiny encoder's cosines are nearly constant; scipy warns about that, rightly
@pytest.mark.filterwarnings("ignore:An input array is nearly constant")
def test_predictions_are_in_row_order(
    tiny_bert_dir: Path, dev_splits: dict[str, TaskSplit]
) -> None:
    model = _model(tiny_bert_dir, sts_head="cosine").eval()
    result = evaluate(model, dev_splits, batch_size=8, device=CPU)
    with torch.no_grad():
        rows = torch.arange(len(dev_splits["sst"]))
        logits = model.forward_task("sst", make_batch(dev_splits["sst"], rows).segments)
        rows = torch.arange(len(dev_splits["sts"]))
        cos = model.forward_task("sts", make_batch(dev_splits["sts"], rows).segments)
        rows = torch.arange(len(dev_splits["para"]))
        para = model.forward_task("para", make_batch(dev_splits["para"], rows).segments)
    # sentiment predictions are the argmax class of each row, in file order
    assert result.predictions["sst"].predictions.tolist() == logits.argmax(dim=-1).tolist()
    # paraphrase predictions are logit > 0
    assert result.predictions["para"].predictions.tolist() == (para > 0).long().tolist()
    # a cosine head's scores are mapped back to the 0..5 label scale
    np.testing.assert_allclose(result.predictions["sts"].predictions, 5 * cos.numpy(), atol=1e-5)
    # class predictions are integers; similarity predictions floats
    assert result.predictions["sst"].predictions.dtype == np.int64
    assert result.predictions["sts"].predictions.dtype == np.float32
    # ids come with the predictions
    assert result.predictions["sts"].ids == dev_splits["sts"].ids


@pytest.mark.usefixtures("original_data")
def test_predict_unlabeled_split(tiny_bert_dir: Path) -> None:
    tokenizer = WordPieceTokenizer.from_pretrained(tiny_bert_dir)
    examples = read_split(ORIGINAL / "ids-sst-test-student.csv", "sst", "test", max_examples=20)
    split = tokenize_split(examples, tokenizer)
    p = predict_split(_model(tiny_bert_dir), split, batch_size=8, device=CPU)
    # an unlabeled split still gets a class per row, with no labels or correctness
    assert p.predictions.shape == (20,) and p.labels is None and p.correct is None
    # every prediction is one of the five classes
    assert set(p.predictions.tolist()) <= {0, 1, 2, 3, 4}
    # scoring an unlabeled split is refused, naming the task
    others = {
        t: TaskPredictions(t, ("a", "b"), np.zeros(2), np.zeros(2), None) for t in ("para", "sts")
    }
    with pytest.raises(ValueError, match="split of task 'sst' has no labels to score against"):
        score({"sst": p, **others})


def test_score_needs_the_three_tasks() -> None:
    sst = TaskPredictions("sst", ("a",), np.zeros(1), np.zeros(1), np.ones(1))
    # scoring without every main task names the missing ones
    with pytest.raises(ValueError, match=r"\['para', 'sts'\] are missing"):
        score({"sst": sst})


def test_evaluate_under_bfloat16_autocast(
    tiny_bert_dir: Path, dev_splits: dict[str, TaskSplit]
) -> None:
    model = _model(tiny_bert_dir)
    result = evaluate(model, dev_splits, 16, CPU, autocast_dtype=torch.bfloat16)
    # autocast evaluation still yields finite metrics under the five keys
    assert tuple(result.metrics) == metrics.METRIC_KEYS
    assert all(np.isfinite(v) for v in result.metrics.values())
