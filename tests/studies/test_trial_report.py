"""The trial report: what a trial reports each epoch besides its scores, read back by the
driver's parts through one dataclass."""

from __future__ import annotations

import pytest

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.studies import SEED_GROUP_KEY, TrialReport, study_keys


def _report() -> TrialReport:
    return TrialReport(patience=3, stale_epochs=1, group_patience=0, min_delta=0.01,
                       epochs_planned=5, best_overall=0.61,
                       train_loss_curve=({"step": 50, "sst": 1.6},))


def test_a_report_reads_back_from_a_result_beside_scores_and_tunes_keys() -> None:
    result = {"overall": 0.6, "training_iteration": 2, "pid": 7, **_report().metrics()}
    # Tune hands numbers back as it stored them: floats where the trainable gave ints
    result.update(patience=3.0, stale_epochs=1.0)
    read = TrialReport.read(result)
    assert read == TrialReport(patience=3, stale_epochs=1, group_patience=0, min_delta=0.01,
                               epochs_planned=5, best_overall=0.61)  # the curve is not read
    assert isinstance(read.patience, int) and isinstance(read.min_delta, float)
    assert result["train_loss_curve"] == [{"step": 50, "sst": 1.6}]


def test_a_missing_report_key_fails_naming_it() -> None:
    result = _report().metrics()
    del result["epochs_planned"]
    with pytest.raises(MtlTuneError, match=r"lacks the report keys \['epochs_planned'\].*"
                                           r"another version of mtl-tune's trainable"):
        TrialReport.read(result)


def test_an_unknown_report_key_fails() -> None:
    with pytest.raises(TypeError, match="should_stop"):
        TrialReport(patience=3, stale_epochs=1, group_patience=0, min_delta=0.0,  # type: ignore[call-arg]
                    epochs_planned=5, best_overall=0.6, should_stop=False)


def test_the_study_keys_are_split_from_the_training_keys() -> None:
    training, study = study_keys({"lr": 1e-5, "seed": 2, SEED_GROUP_KEY: "t0"})
    assert training == {"lr": 1e-5, "seed": 2} and study == {SEED_GROUP_KEY: "t0"}
