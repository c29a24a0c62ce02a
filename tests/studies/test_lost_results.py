"""Trial results a killed driver staged in its Ray session but had not copied to the study yet
are put back when it resumes, up to what the restored experiment will not report again
(`store/_lost_results.py`)."""

from __future__ import annotations

import json
from pathlib import Path

from mtl_tune.studies.store._lost_results import recover_trial_logs
from mtl_tune.studies.store._rewound_results import rewind_trial_logs


def _rows(count: int) -> str:
    return "".join(json.dumps({"training_iteration": e, "checkpoint_dir_name":
                               f"checkpoint_{e - 1:06d}"}) + "\n" for e in range(1, count + 1))


def _saved_state(experiment: Path, trials: dict[str, tuple[str, str | None]]) -> None:
    """Ray Tune's saved state: trial folder -> (status, the checkpoint it resumes from)."""
    data = [[json.dumps({"trial_id": folder[-1], "status": status, "relative_logdir": folder}),
             json.dumps({"last_result": {"checkpoint_dir_name": checkpoint}})]
            for folder, (status, checkpoint) in trials.items()]
    (experiment / "experiment_state-2026-12-06_10-00-00.json").write_text(
        json.dumps({"trial_data": data}))


def test_a_killed_drivers_staged_results_are_put_back_up_to_the_resume_point(
    tmp_path: Path,
) -> None:
    experiment = tmp_path / "study" / "tune" / "main"
    for folder in ("trial_a", "trial_b", "trial_d"):
        (experiment / folder).mkdir(parents=True)
    (experiment / "trial_b" / "result.json").write_text(_rows(1))
    # Tune saved its state when a had ended, b resumes from its second epoch's checkpoint, d
    # has none yet
    _saved_state(experiment, {"trial_a": ("TERMINATED", "checkpoint_000001"),
                              "trial_b": ("RUNNING", "checkpoint_000001"),
                              "trial_d": ("RUNNING", None)})
    staging = (tmp_path / "ray" / "session_2026-12-06_10-00-00_1" / "artifacts"
               / "2026-12-06_10-00-01" / "main" / "driver_artifacts")
    # then the driver ran on, and was killed before it copied these into the study
    for folder, epochs in (("trial_a", 2), ("trial_b", 4), ("trial_d", 1), ("trial_c", 3)):
        (staging / folder).mkdir(parents=True)
        (staging / folder / "result.json").write_text(_rows(epochs))
    (staging / "trial_a" / "params.json").write_text('{"lr": 0.1}')

    assert recover_trial_logs(str(experiment), tmp_path / "ray") == 2
    # ended: every epoch it reported (it showed as MISSING before)
    assert (experiment / "trial_a" / "result.json").read_text() == _rows(2)
    assert (experiment / "trial_a" / "params.json").read_text() == '{"lr": 0.1}'
    # resumed from epoch 2: epochs 3 and 4 are run and reported again, not listed twice
    assert (experiment / "trial_b" / "result.json").read_text() == _rows(2)
    # no checkpoint: it starts over; another study's trial folder of the same experiment name
    assert not (experiment / "trial_d" / "result.json").exists()
    assert not (experiment / "trial_c").exists()
    # done once: a second resume finds nothing to add
    assert recover_trial_logs(str(experiment), tmp_path / "ray") == 0


def test_nothing_is_recovered_without_a_saved_state(tmp_path: Path) -> None:
    assert recover_trial_logs(str(tmp_path / "no-such-study" / "tune" / "main"),
                              tmp_path / "ray") == 0


def _progress(count: int) -> str:
    return "training_iteration,checkpoint_dir_name\n" + "".join(
        f"{e},checkpoint_{e - 1:06d}\n" for e in range(1, count + 1))


def test_epochs_saved_after_the_resume_checkpoint_are_moved_aside(tmp_path: Path) -> None:
    experiment = tmp_path / "study" / "tune" / "main"
    for folder in ("trial_a", "trial_b", "trial_c", "trial_d"):
        (experiment / folder).mkdir(parents=True)
        (experiment / folder / "result.json").write_text(_rows(3))
        (experiment / folder / "progress.csv").write_text(_progress(3))
    # Tune copied the trials' files after it wrote its state, and b reported its third epoch
    # between the two: b resumes from its second epoch's checkpoint, Tune downloads its files
    # and appends the third epoch again (a resumed rehearsal listed epochs 1, 2, 3, 3)
    _saved_state(experiment, {"trial_a": ("TERMINATED", "checkpoint_000001"),
                              "trial_b": ("RUNNING", "checkpoint_000001"),
                              "trial_c": ("PAUSED", "checkpoint_000009"),
                              "trial_d": ("RUNNING", None)})

    assert rewind_trial_logs(str(experiment)) == 1
    b = experiment / "trial_b"
    assert (b / "result.json").read_text() == _rows(2)
    assert (b / "rewound-result.json").read_text() == _rows(3).splitlines(True)[2]
    assert (b / "progress.csv").read_text() == _progress(2)
    assert (b / "rewound-progress.csv").read_text() == (
        "training_iteration,checkpoint_dir_name\n3,checkpoint_000002\n")
    # ended; a checkpoint its lines do not name; no checkpoint (Tune starts it afresh): as were
    for folder in ("trial_a", "trial_c", "trial_d"):
        assert (experiment / folder / "result.json").read_text() == _rows(3)
        assert not (experiment / folder / "rewound-result.json").exists()
    # done once: a second resume finds the files as the saved state has them
    assert rewind_trial_logs(str(experiment)) == 0
    assert (b / "result.json").read_text() == _rows(2)


def test_a_second_rewind_appends_to_what_was_moved_aside(tmp_path: Path) -> None:
    trial = tmp_path / "main" / "trial_b"
    trial.mkdir(parents=True)
    (trial / "result.json").write_text(_rows(3))
    _saved_state(tmp_path / "main", {"trial_b": ("RUNNING", "checkpoint_000001")})
    rewind_trial_logs(str(tmp_path / "main"))
    (trial / "result.json").write_text(_rows(4))  # the resumed driver ran on, was killed again
    _saved_state(tmp_path / "main", {"trial_b": ("RUNNING", "checkpoint_000000")})
    assert rewind_trial_logs(str(tmp_path / "main")) == 1
    assert (trial / "result.json").read_text() == _rows(1)
    moved = _rows(4).splitlines(True)
    assert (trial / "rewound-result.json").read_text() == "".join([moved[2], *moved[1:]])
