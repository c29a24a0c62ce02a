"""Trial logs a killed driver staged in its Ray session but had not copied to the study yet are
copied into the study when it resumes (`_lost_logs`)."""

from __future__ import annotations

from pathlib import Path

from mtl_tune.studies.driver._lost_logs import recover_trial_logs


def _lines(count: int) -> str:
    return "".join(f'{{"epoch": {e}}}\n' for e in range(1, count + 1))


def test_a_killed_drivers_staged_logs_are_recovered_where_longer(tmp_path: Path) -> None:
    # the driver was killed before copying its staging folder: the trial that ended meanwhile
    # has no result.json in the study (it showed as MISSING), the running one lacks its last
    # epoch
    experiment = tmp_path / "study" / "tune" / "main"
    ended, running = experiment / "trial_a_1", experiment / "trial_b_1"
    ended.mkdir(parents=True)
    running.mkdir()
    (running / "result.json").write_text(_lines(1))
    (running / "progress.csv").write_text("epoch\n1\n2\n3\n")  # longer in the study: kept
    staging = (tmp_path / "ray" / "session_2026-12-06_10-00-00_1" / "artifacts"
               / "2026-12-06_10-00-01" / "main" / "driver_artifacts")
    for trial, epochs in (("trial_a_1", 2), ("trial_b_1", 3), ("trial_c_other_study", 4)):
        (staging / trial).mkdir(parents=True)
        (staging / trial / "result.json").write_text(_lines(epochs))
    (staging / "trial_b_1" / "progress.csv").write_text("epoch\n1\n")

    assert recover_trial_logs(str(experiment), tmp_path / "ray") == 2
    assert (ended / "result.json").read_text() == _lines(2)
    assert (running / "result.json").read_text() == _lines(3)
    assert (running / "progress.csv").read_text() == "epoch\n1\n2\n3\n"
    # a trial folder of another study's experiment of the same name is not this study's
    assert not (experiment / "trial_c_other_study").exists()
    # done once: a second resume finds nothing to copy
    assert recover_trial_logs(str(experiment), tmp_path / "ray") == 0


def test_nothing_is_recovered_from_an_unreadable_storage(tmp_path: Path) -> None:
    assert recover_trial_logs(str(tmp_path / "no-such-study" / "tune" / "main"),
                              tmp_path / "ray") == 0
