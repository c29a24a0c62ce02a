import statistics

import numpy as np
import pytest

from mtl_tune.platform.evaluate import TaskPredictions
from mtl_tune.platform.metrics import overall
from mtl_tune.reports import paired_bootstrap, significance_mark, summarize_seeds

N = 300


def predictions(sst_right: float, para_right: float, sts_noise: float, seed: int = 0) -> dict:
    """Synthetic labeled dev predictions: a share of correct classes, noisy similarities."""
    rng = np.random.default_rng(seed)
    label_rng = np.random.default_rng(123)  # the same labels for every model
    ids = tuple(f"id{i}" for i in range(N))
    out = {}
    for task, classes, right in (("sst", 5, sst_right), ("para", 2, para_right)):
        labels = label_rng.integers(0, classes, N)
        wrong = (labels + rng.integers(1, classes, N)) % classes
        preds = np.where(rng.random(N) < right, labels, wrong)
        out[task] = TaskPredictions(task, ids, preds, labels, (preds == labels).astype(np.int8))
    labels = label_rng.uniform(0, 5, N)
    sts = np.clip(labels + rng.normal(0, sts_noise, N), 0, 5)
    out["sts"] = TaskPredictions("sts", ids, sts, labels, None)
    return out


def float64_overall(p: dict) -> float:
    sst, para = (float(np.mean(p[t].predictions == p[t].labels)) for t in ("sst", "para"))
    return overall(sst, para, float(np.corrcoef(p["sts"].predictions, p["sts"].labels)[0, 1]))


def test_large_difference_is_highly_significant() -> None:
    weak, strong = predictions(0.3, 0.5, 3.0), predictions(0.8, 0.9, 0.3, seed=1)
    result = paired_bootstrap(weak, strong, n_resamples=2000, seed=0)
    # a known large gain gives p < 0.01 and the '**' mark
    assert result.p_value < 0.01 and result.mark == "**"
    # the observed statistic is the difference of the two overall scores
    assert result.difference == pytest.approx(float64_overall(strong) - float64_overall(weak))
    # its interval excludes zero
    assert result.ci_low > 0
    # every example of every task is compared
    assert result.examples == {"sst": N, "para": N, "sts": N}


def test_identical_predictions_get_no_mark() -> None:
    same = predictions(0.5, 0.7, 1.0)
    result = paired_bootstrap(same, same, n_resamples=1000, seed=0)
    # no difference: p = 1 and no mark
    assert (result.difference, result.p_value, result.mark) == (0.0, 1.0, "")


def test_bootstrap_is_seeded_and_paired_by_id() -> None:
    a, b = predictions(0.4, 0.6, 1.5), predictions(0.45, 0.62, 1.2, seed=2)
    first, again = paired_bootstrap(a, b, 1000, seed=3), paired_bootstrap(a, b, 1000, seed=3)
    # the same seed gives the same result
    assert first == again
    order = np.random.default_rng(0).permutation(N)
    shuffled = {
        t: TaskPredictions(t, tuple(np.asarray(p.ids)[order]), p.predictions[order],
                           p.labels[order], None if p.correct is None else p.correct[order])
        for t, p in b.items()
    }
    # examples are matched by id, not by position
    assert paired_bootstrap(a, shuffled, 1000, seed=3).difference == pytest.approx(
        first.difference)


def test_missing_task_is_refused() -> None:
    full = predictions(0.5, 0.5, 1.0)
    # all three tasks are needed to compute overall
    with pytest.raises(ValueError, match=r"\['sts'\] are missing"):
        paired_bootstrap(full, {k: v for k, v in full.items() if k != "sts"})


@pytest.mark.parametrize(("p", "mark"), [(0.001, "**"), (0.0099, "**"), (0.01, "*"),
                                         (0.049, "*"), (0.05, ""), (1.0, "")])
def test_significance_marks(p: float, mark: str) -> None:
    # '**' below 0.01, '*' below 0.05, else nothing
    assert significance_mark(p) == mark


def test_seed_summary_mean_std_and_t_interval() -> None:
    from scipy import stats

    values = [0.41, 0.43, 0.40, 0.47]
    summary = summarize_seeds(values, n_resamples=2000, seed=0)
    # mean and sample std (ddof=1) over seeds
    assert (summary.mean, summary.std) == pytest.approx(
        (statistics.fmean(values), statistics.stdev(values)))
    # under 5 seeds the interval is Student's t, scipy's own, wider than the values' range
    expected = stats.t.interval(0.95, df=3, loc=summary.mean, scale=stats.sem(values))
    assert (summary.method, (summary.ci_low, summary.ci_high)) == ("t", pytest.approx(expected))
    two = summarize_seeds([0.328, 0.357])
    # two seeds: mean +- 12.71 x std / sqrt(2), not the two values themselves
    assert (two.ci_low, two.ci_high) == pytest.approx(
        stats.t.interval(0.95, df=1, loc=0.3425, scale=stats.sem([0.328, 0.357])))
    assert two.ci_low < 0.328 - 0.1 and two.ci_high > 0.357 + 0.1
    single = summarize_seeds([0.5])
    # one seed: a mean but no spread
    assert single.mean == 0.5 and np.isnan(single.std) and np.isnan(single.ci_low)


def test_seed_summary_bootstraps_from_five_seeds() -> None:
    from scipy import stats

    values = [0.41, 0.43, 0.40, 0.47, 0.45, 0.44]
    summary = summarize_seeds(values, n_resamples=999, seed=3)
    # from 5 seeds on: scipy's BCa bootstrap with the same resamples and seed
    expected = stats.bootstrap((np.asarray(values),), np.mean, n_resamples=999, method="BCa",
                               rng=np.random.default_rng(3)).confidence_interval
    assert summary.method == "BCa bootstrap"
    assert (summary.ci_low, summary.ci_high) == pytest.approx((expected.low, expected.high))
    # seeds that agree exactly give a point interval rather than scipy's degenerate warning
    same = summarize_seeds([0.4] * 5)
    assert (same.ci_low, same.ci_high, same.method) == (0.4, 0.4, "BCa bootstrap")
