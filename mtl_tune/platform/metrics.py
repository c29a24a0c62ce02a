"""Task metrics (accuracy, Pearson) and the two overall scores every table reports.

scipy is imported by `pearson` when it runs: the metric keys are read by every command, and
`scipy.stats` alone takes most of a second to import (half of `study status`'s time).
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

METRIC_KEYS = ("sst_acc", "para_acc", "sts_corr", "overall", "mean_score")
# the values each metric can take: accuracies and the leaderboard's overall in [0, 1], Pearson
# r in [-1, 1], the paper's mean of the three in [-1/3, 1]
METRIC_RANGES = {
    "sst_acc": (0.0, 1.0),
    "para_acc": (0.0, 1.0),
    "sts_corr": (-1.0, 1.0),
    "overall": (0.0, 1.0),
    "mean_score": (-1.0 / 3.0, 1.0),
}


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    if len(predictions) != len(labels) or len(labels) == 0:
        raise ValueError(
            "predictions and labels must be non-empty and of equal length, but got "
            f"({len(predictions)}, {len(labels)})"
        )
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Pearson's r; 0.0 (with a warning) when the predictions are constant, where r is undefined."""
    if len(predictions) != len(labels) or len(labels) < 2:
        raise ValueError(
            "predictions and labels must have equal length >= 2, but got "
            f"({len(predictions)}, {len(labels)})"
        )
    # float64: scipy computes in the input dtype, and float32 loses digits on near-constant input
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        logger.warning("constant predictions or labels: Pearson r undefined, reported as 0.0")
        return 0.0
    from scipy import stats

    return float(stats.pearsonr(predictions, labels).statistic)


def overall(sst_acc: float, para_acc: float, sts_corr: float) -> float:
    """The course leaderboard's score: (SST acc + PD acc + (STS r + 1) / 2) / 3."""
    return (sst_acc + para_acc + (sts_corr + 1.0) / 2.0) / 3.0


def mean_score(sst_acc: float, para_acc: float, sts_corr: float) -> float:
    """The plain mean of the three, the paper's "Overall" column."""
    return (sst_acc + para_acc + sts_corr) / 3.0


def summary(sst_acc: float, para_acc: float, sts_corr: float) -> dict[str, float]:
    """The five reported metrics under their `METRIC_KEYS` names."""
    return {
        "sst_acc": sst_acc,
        "para_acc": para_acc,
        "sts_corr": sts_corr,
        "overall": overall(sst_acc, para_acc, sts_corr),
        "mean_score": mean_score(sst_acc, para_acc, sts_corr),
    }
