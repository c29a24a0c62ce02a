"""The trial report: everything a trial reports each epoch (`EpochReport`: scores, the trainer's
numbers, placement, and `TrialReport`'s progress), read back by the driver's parts through one
dataclass."""

from __future__ import annotations

import pytest

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.studies import SEED_GROUP_KEY, EpochReport, Placement, TrialReport, study_keys
from mtl_tune.studies.spec import TUNE_KEYS


def _report() -> TrialReport:
    return TrialReport(patience=3, stale_epochs=1, group_patience=0, min_delta=0.01,
                       epochs_planned=5, best_overall=0.61,
                       train_loss_curve=({"step": 50, "sst": 1.6},))


def test_a_report_reads_back_from_a_result_beside_scores_and_tunes_keys() -> None:
    result = {"overall": 0.6, "training_iteration": 2, "pid": 7, **_report().metrics()}
    # Tune hands numbers back as it stored them: floats where the trainable gave ints
    result.update(patience=3.0, stale_epochs=1.0)
    read = TrialReport.from_result(result)
    assert read == _report()
    assert isinstance(read.patience, int) and isinstance(read.min_delta, float)
    assert result["train_loss_curve"] == [{"step": 50, "sst": 1.6}]
    # a seed group's mean of several results has no curve: the rest still reads
    del result["train_loss_curve"]
    assert TrialReport.from_result(result).train_loss_curve == ()


def test_a_missing_report_key_fails_naming_it() -> None:
    result = _report().metrics()
    del result["epochs_planned"]
    with pytest.raises(MtlTuneError, match=r"lacks the report keys \['epochs_planned'\].*"
                                           r"another version of mtl-tune's trainable"):
        TrialReport.from_result(result)


def test_an_unknown_report_key_fails() -> None:
    with pytest.raises(TypeError, match="should_stop"):
        TrialReport(patience=3, stale_epochs=1, group_patience=0, min_delta=0.0,  # type: ignore[call-arg]
                    epochs_planned=5, best_overall=0.6, should_stop=False)


def test_the_study_keys_are_split_from_the_training_keys() -> None:
    training, study = study_keys({"lr": 1e-5, "seed": 2, SEED_GROUP_KEY: "t0"})
    assert training == {"lr": 1e-5, "seed": 2} and study == {SEED_GROUP_KEY: "t0"}


def _epoch() -> EpochReport:
    return EpochReport(
        scores={"sst_acc": 0.4, "para_acc": 0.7, "sts_corr": 0.5, "overall": 0.6,
                "mean_score": 0.53},
        training={"epoch": 2.0, "eval_seconds": 1.0, "lr": 1e-5, "epoch_seconds": 9.0,
                  "examples_per_second": 50.0, "tokens_per_second": 900.0,
                  "train_examples": 450.0, "steps": 57.0, "train_loss_sst": 1.4,
                  "task_weight_sst": 1.0},
        placement=Placement(hostname="h", node_id="n1", gpu_ids="0", cpus=1.0, device="cuda:0"),
        progress=_report(),
    )


def test_an_epoch_report_is_the_flat_result_and_reads_back_whole() -> None:
    metrics = _epoch().metrics()
    # the keys result.json has held since studies were first written: flat, by name
    assert {"overall", "lr", "train_loss_sst", "device", "gpu_ids", "stale_epochs",
            "train_loss_curve"} <= set(metrics)
    result = {**metrics, "training_iteration": 2, "trial_id": "t1", "done": False, "pid": 7,
              "node_ip": "127.0.0.1", "time_total_s": 3.0}
    assert EpochReport.from_result(result) == _epoch()


@pytest.mark.parametrize(("change", "named"), [
    ({"overal": 0.6}, r"unknown \['overal'\]"),  # a misspelt key
    ({"should_stop": False}, r"unknown \['should_stop'\]"),  # a key nobody reads
])
def test_an_epoch_report_names_a_stray_key(change: dict, named: str) -> None:
    result = {**_epoch().metrics(), **change}
    with pytest.raises(MtlTuneError, match=r"does not match the epoch report: missing \[\], "
                                           + named):
        EpochReport.from_result(result)


def test_an_epoch_report_names_a_missing_key() -> None:
    result = _epoch().metrics()
    del result["gpu_ids"], result["sts_corr"]
    with pytest.raises(MtlTuneError, match=r"missing \['sts_corr', 'gpu_ids'\], unknown \[\]"):
        EpochReport.from_result(result)


def test_tunes_own_keys_are_all_named() -> None:
    from ray.tune.result import AUTO_RESULT_KEYS

    # every key Tune adds to a result is one of TUNE_KEYS: none is taken for a stray key
    assert set(AUTO_RESULT_KEYS) <= TUNE_KEYS
