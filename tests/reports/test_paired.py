import math
import statistics

import numpy as np
import pytest

from mtl_tune.platform.evaluate import TaskPredictions
from mtl_tune.platform.metrics import overall
from mtl_tune.reports import (
    holm,
    paired_comparison,
    seeds_for_power,
    significance_mark,
    summarize_seeds,
)

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
    result = paired_comparison(weak, strong, n_resamples=2000, seed=0)
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
    result = paired_comparison(same, same, n_resamples=1000, seed=0)
    # no difference: p = 1 and no mark
    assert (result.difference, result.p_value, result.mark) == (0.0, 1.0, "")


def test_comparison_is_seeded_and_paired_by_id() -> None:
    a, b = predictions(0.4, 0.6, 1.5), predictions(0.45, 0.62, 1.2, seed=2)
    first, again = paired_comparison(a, b, 1000, seed=3), paired_comparison(a, b, 1000, seed=3)
    # the same seed gives the same result
    assert first == again
    order = np.random.default_rng(0).permutation(N)
    shuffled = {
        t: TaskPredictions(t, tuple(np.asarray(p.ids)[order]), p.predictions[order],
                           p.labels[order], None if p.correct is None else p.correct[order])
        for t, p in b.items()
    }
    # examples are matched by id, not by position
    assert paired_comparison(a, shuffled, 1000, seed=3).difference == pytest.approx(
        first.difference)


def test_missing_task_is_refused() -> None:
    full = predictions(0.5, 0.5, 1.0)
    # all three tasks are needed to compute overall
    with pytest.raises(ValueError, match=r"\['sts'\] are missing"):
        paired_comparison(full, {k: v for k, v in full.items() if k != "sts"})


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
    # two seeds: mean +- 12.71 x std / sqrt(2), not the two values themselves; marked as wide
    assert (two.ci_low, two.ci_high) == pytest.approx(
        stats.t.interval(0.95, df=1, loc=0.3425, scale=stats.sem([0.328, 0.357])))
    assert two.ci_low < 0.328 - 0.1 and two.ci_high > 0.357 + 0.1
    assert two.wide and not summary.wide
    single = summarize_seeds([0.5])
    # one seed: a mean but no spread
    assert single.mean == 0.5 and np.isnan(single.std) and np.isnan(single.ci_low)


@pytest.mark.parametrize(
    ("values", "bounds", "cut"),
    [
        # it7's SST accuracy over 2 seeds: the t interval [-0.349, 0.794] leaves [0, 1]
        ([0.177, 0.268], (0.0, 1.0), (0.0, None)),
        # it1's STS Pearson over 2 seeds: [-1.307, 1.262] leaves [-1, 1] at both ends
        ([-0.124, 0.079], (-1.0, 1.0), (-1.0, 1.0)),
    ],
)
def test_an_interval_stays_in_its_metrics_range(
    values: list[float], bounds: tuple[float, float], cut: tuple[float | None, float | None]
) -> None:
    from scipy import stats

    free = stats.t.interval(0.95, df=1, loc=np.mean(values), scale=stats.sem(values))
    summary = summarize_seeds(values, bounds=bounds)
    # cut to the range where it leaves it, scipy's interval where it does not
    expected = (cut[0] if cut[0] is not None else free[0],
                cut[1] if cut[1] is not None else free[1])
    assert (summary.ci_low, summary.ci_high) == pytest.approx(expected)
    assert bounds[0] <= summary.ci_low <= summary.mean <= summary.ci_high <= bounds[1]
    # the method says it was cut, and to what
    assert summary.method == f"t, cut to [{bounds[0]:.4g}, {bounds[1]:.4g}]"
    # an interval inside the range is left alone
    inside = summarize_seeds([0.41, 0.43, 0.40, 0.47], bounds=(0.0, 1.0))
    assert inside.method == "t" and inside == summarize_seeds([0.41, 0.43, 0.40, 0.47])


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


def test_permutation_p_is_the_exact_paired_test_on_a_small_case() -> None:
    from itertools import product

    labels = {"sst": np.array([0, 1, 2]), "para": np.array([1, 0]),
              "sts": np.array([0.0, 2.0, 5.0])}
    a = {"sst": np.array([0, 1, 0]), "para": np.array([0, 0]), "sts": np.array([1.0, 1.5, 4.0])}
    b = {"sst": np.array([0, 2, 2]), "para": np.array([1, 0]), "sts": np.array([0.5, 3.0, 2.0])}

    def side(values: dict) -> dict:
        return {t: TaskPredictions(t, tuple(f"{t}{i}" for i in range(len(v))), v, labels[t],
                                   None) for t, v in values.items()}

    def overall_of(values: dict) -> float:
        sst, para = ((values[t] == labels[t]).mean() for t in ("sst", "para"))
        return overall(sst, para, float(np.corrcoef(values["sts"], labels["sts"])[0, 1]))

    observed = overall_of(b) - overall_of(a)
    # every one of the 2^8 ways to swap an example's two predictions, enumerated by hand
    flat_a = np.concatenate([a[t] for t in ("sst", "para", "sts")])
    flat_b = np.concatenate([b[t] for t in ("sst", "para", "sts")])
    cuts = np.cumsum([0, 3, 2, 3])
    null = []
    for swap in product((False, True), repeat=8):
        x, y = np.where(swap, flat_b, flat_a), np.where(swap, flat_a, flat_b)
        split = {t: (x[cuts[i]:cuts[i + 1]], y[cuts[i]:cuts[i + 1]])
                 for i, t in enumerate(("sst", "para", "sts"))}
        null.append(overall_of({t: v[1] for t, v in split.items()})
                    - overall_of({t: v[0] for t, v in split.items()}))
    null_values = np.asarray(null)
    tolerance = 1e-12
    expected = min(1.0, 2 * min((null_values >= observed - tolerance).mean(),
                                (null_values <= observed + tolerance).mean()))
    result = paired_comparison(side(a), side(b), n_resamples=1000, seed=0)
    # 256 arrangements < 1000 resamples: scipy runs the exact test, which is this enumeration
    assert result.difference == pytest.approx(observed)
    assert result.p_value == pytest.approx(expected)


def test_holm_adjustment_by_hand() -> None:
    # m = 4 sorted: 0.01 x 4 = 0.04; 0.02 x 3 = 0.06; 0.03 x 2 = 0.06 (monotone); 0.5 x 1 = 0.5
    adjusted = holm([0.03, np.nan, 0.01, 0.5, 0.02])
    np.testing.assert_allclose(adjusted, [0.06, np.nan, 0.04, 0.5, 0.06])
    # capped at 1, and a lone test is unchanged
    np.testing.assert_allclose(holm([0.6, 0.7]), [1.0, 1.0])
    assert holm([0.2])[0] == 0.2


def test_seeds_for_power_closed_form() -> None:
    from scipy.stats import norm

    first, second = [0.50, 0.52, 0.54, 0.53, 0.51], [0.55, 0.56, 0.60, 0.57, 0.58]
    pooled = (4 * np.var(first, ddof=1) + 4 * np.var(second, ddof=1)) / 8
    delta = float(np.mean(second) - np.mean(first))
    n = 2 * (norm.ppf(0.975) + norm.ppf(0.8)) ** 2 * pooled / delta**2
    # from 5 seeds a row: the two-sample normal formula with the pooled sd, rounded up, >= 3
    assert seeds_for_power(delta, first, second) == max(3, math.ceil(n)) == 3
    # a difference 8x smaller needs 64x the seeds
    assert seeds_for_power(delta / 8, first, second) == math.ceil(64 * n) > 3
    # fewer than two seeds in a row: no answer; no difference at all: never detectable
    assert math.isnan(seeds_for_power(delta, [0.5], second))
    assert seeds_for_power(0.0, first, second) == math.inf


def test_few_seeds_plan_with_an_upper_bound_on_the_sd() -> None:
    from scipy.stats import chi2, norm

    first, second = [0.50, 0.52], [0.55, 0.56]
    pooled = (np.var(first, ddof=1) + np.var(second, ddof=1)) / 2
    delta = float(np.mean(second) - np.mean(first)) / 4
    z2 = (norm.ppf(0.975) + norm.ppf(0.8)) ** 2
    # 2 seeds a row, df = 2: sigma^2 is its 90% upper bound, s^2 df / chi2(0.1, df), 9.5x s^2
    bound = pooled * 2 / chi2.ppf(0.1, 2)
    assert bound == pytest.approx(9.49 * pooled, rel=1e-2)
    assert seeds_for_power(delta, first, second) == math.ceil(2 * z2 * bound / delta**2)
    # which is far more than the sd seen on 2 values asks for
    assert seeds_for_power(delta, first, second) > 9 * math.ceil(2 * z2 * pooled / delta**2)


def test_the_probability_of_improvement_is_the_share_of_seed_pairs_it_wins() -> None:
    from mtl_tune.reports._stats import probability_of_improvement

    previous = [0.60, 0.62, 0.65]  # a hand-made pair of rows: 3 seeds each
    row = [0.61, 0.65, 0.70]
    # by hand, the 9 pairs (row's seed, previous's seed): 0.61 beats 0.60 only; 0.65 beats
    # 0.60 and 0.62 and ties 0.65; 0.70 beats all three: 1 + 2.5 + 3 = 6.5 of 9
    better = probability_of_improvement(previous, row)
    assert better.probability == pytest.approx(6.5 / 9)
    # for a metric to minimise, the complement
    assert probability_of_improvement(previous, row, "min").probability == pytest.approx(2.5 / 9)
    # the interval: each row's seeds resampled on their own, seeded; a direct recount over the
    # same resamples gives the same bounds
    rng = np.random.default_rng(0)
    a = np.asarray(previous)[rng.integers(0, 3, (2000, 3))]
    b = np.asarray(row)[rng.integers(0, 3, (2000, 3))]
    shares = [sum((y > x) + 0.5 * (y == x) for x in xs for y in ys) / 9
              for xs, ys in zip(a, b, strict=True)]
    low, high = np.quantile(shares, [0.025, 0.975])
    assert (better.ci_low, better.ci_high) == pytest.approx((low, high))
    assert better.ci_low <= better.probability <= better.ci_high
    # one seed on a side: the share alone, no interval
    single = probability_of_improvement([0.6], row)
    assert single.probability == 1.0 and math.isnan(single.ci_low)



def test_the_interquartile_mean_trims_a_quarter_from_each_end() -> None:
    from mtl_tune.reports._stats import interquartile_mean

    assert interquartile_mean([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(3.0)
    assert interquartile_mean([0.7, 0.1, 0.5, 0.6, 0.55, 0.65, 0.62, 0.58]) == pytest.approx(
        np.mean([0.55, 0.58, 0.6, 0.62]))
    with pytest.raises(ValueError, match="needs at least one value, but got none"):
        interquartile_mean([])


def test_the_dev_table_gives_aggregates_an_iqm_from_five_seeds() -> None:
    import pandas as pd

    from mtl_tune.reports._dev_table import dev_table

    def frame(overalls: list[float]) -> pd.DataFrame:
        return pd.DataFrame([{
            "experiment": "main", "trial_id": f"t{seed}", "trainable": "it1-baseline",
            "status": "TERMINATED", "epoch": 1, "seed": seed, "trial_seconds": 1.0,
            "gpus_per_trial": 0.0, "cpus_per_trial": 1.0, "checkpoint": None,
            "sst_acc": 0.4, "para_acc": 0.7, "sts_corr": 0.5, "overall": value,
            "mean_score": value - 0.1} for seed, value in enumerate(overalls)])

    five = dev_table(frame([0.50, 0.60, 0.62, 0.64, 0.10]), ["it1-baseline"], n_resamples=50)
    assert five["overall_iqm"].iloc[0] == pytest.approx(np.mean([0.50, 0.60, 0.62]))
    assert five["mean_score_iqm"].iloc[0] == pytest.approx(np.mean([0.40, 0.50, 0.52]))
    assert "sst_acc_iqm" not in five  # a task's own score is no aggregate
    four = dev_table(frame([0.50, 0.60, 0.62, 0.64]), ["it1-baseline"], n_resamples=50)
    assert np.isnan(four["overall_iqm"].iloc[0])
