"""The checkpoint a trial of Tune's saved state resumes from is its checkpoint manager's newest,
not the one its last result names (`store/_resume_checkpoint.py`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.train._internal.session import _TrainingResult
from ray.tune import Checkpoint, CheckpointConfig
from ray.tune.utils.serialization import TuneFunctionEncoder

from mtl_tune.studies.store._resume_checkpoint import checkpoint_manager_latest
from mtl_tune.studies.store._rewound_results import rewind_trial_logs
from mtl_tune.studies.store._saved_state import parse_state


def tune_metadata(trial_dir: Path, registered: int, last_result_epoch: int) -> dict[str, Any]:
    """A trial's saved metadata as Tune writes it: `registered` checkpoints in its manager and
    a last result whose checkpoint is that of epoch `last_result_epoch`."""
    manager = _CheckpointManager(CheckpointConfig(num_to_keep=1))
    for index in range(registered):
        folder = trial_dir / f"checkpoint_{index:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        manager.register_checkpoint(_TrainingResult(checkpoint=Checkpoint(str(folder)),
                                                    metrics={"epoch": index + 1}))
    last = {"epoch": last_result_epoch,
            "checkpoint_dir_name": f"checkpoint_{last_result_epoch - 1:06d}"}
    encoded = json.dumps({"last_result": last, "checkpoint_manager": manager},
                         cls=TuneFunctionEncoder)
    metadata: dict[str, Any] = json.loads(encoded)
    return metadata


def test_a_trial_resumes_from_its_managers_newest_checkpoint_not_its_last_results(
    tmp_path: Path,
) -> None:
    # Tune recorded the third epoch's result, then saved its state before it registered the
    # result's checkpoint: the trial resumes from the second epoch's (and reports the third
    # again), which is what a driver resuming it must expect
    metadata = tune_metadata(tmp_path / "trial_b", registered=2, last_result_epoch=3)
    assert checkpoint_manager_latest(metadata) == "checkpoint_000001"
    state = json.dumps({"trial_data": [[json.dumps({"trial_id": "b", "status": "RUNNING"}),
                                        json.dumps(metadata)]]})
    assert parse_state(state)["b"].checkpoint == "checkpoint_000001"


def test_a_trial_without_a_checkpoint_resumes_from_none(tmp_path: Path) -> None:
    assert checkpoint_manager_latest(tune_metadata(tmp_path, 0, 1)) is None


@pytest.mark.parametrize(("packed", "message"), [
    (None, "the trial's metadata holds no pickled checkpoint manager"),
    ({"_type": "CLOUDPICKLE_FALLBACK", "value": "80059500"},
     "the trial's checkpoint manager does not read"),
    ({"_type": "CLOUDPICKLE_FALLBACK", "value": "not hex"},
     "the trial's checkpoint manager does not read"),
])
def test_a_manager_that_does_not_read_is_refused(packed: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        checkpoint_manager_latest({"checkpoint_manager": packed})


def test_a_state_whose_manager_does_not_read_falls_back_to_the_last_result() -> None:
    metadata = {"last_result": {"checkpoint_dir_name": "checkpoint_000004"},
                "checkpoint_manager": {"_type": "CLOUDPICKLE_FALLBACK", "value": "00"}}
    state = json.dumps({"trial_data": [[json.dumps({"trial_id": "b", "status": "PAUSED"}),
                                        json.dumps(metadata)]]})
    assert parse_state(state)["b"].checkpoint == "checkpoint_000004"


def test_the_pickle_runs_no_code(tmp_path: Path) -> None:
    import pickle

    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (tmp_path / "ran",))

    value = pickle.dumps({"_latest_checkpoint_result": Boom()}).hex()
    with pytest.raises(ValueError):
        checkpoint_manager_latest({"checkpoint_manager": {"_type": "CLOUDPICKLE_FALLBACK",
                                                          "value": value}})
    assert not (tmp_path / "ran").exists()


def test_a_resumed_trial_lists_the_epoch_it_reports_again_once(tmp_path: Path) -> None:
    # the state of a killed rehearsal's driver (it listed epochs 1, 2, 3, 3 after its resume):
    # Tune's copy of the trial's results, taken after its state, holds the third epoch
    experiment = tmp_path / "tune" / "main"
    trial_dir = experiment / "trial_b"
    metadata = tune_metadata(trial_dir, registered=2, last_result_epoch=3)
    rows = [json.dumps({"epoch": e, "checkpoint_dir_name": f"checkpoint_{e - 1:06d}"})
            for e in (1, 2, 3)]
    (trial_dir / "result.json").write_text("".join(row + "\n" for row in rows))
    (experiment / "experiment_state-2026-12-07_13-15-29.json").write_text(json.dumps(
        {"trial_data": [[json.dumps({"trial_id": "b", "status": "RUNNING",
                                     "relative_logdir": "trial_b"}), json.dumps(metadata)]]}))
    assert rewind_trial_logs(str(experiment)) == 1
    assert (trial_dir / "result.json").read_text() == rows[0] + "\n" + rows[1] + "\n"
    assert (trial_dir / "rewound-result.json").read_text() == rows[2] + "\n"


def test_a_checkpoint_in_another_trials_folder_falls_back_to_the_last_result(
    tmp_path: Path,
) -> None:
    # a population's member that took another member's checkpoint: its own result lines do not
    # name that one, so the name its last result gives is kept, as before
    metadata = tune_metadata(tmp_path / "trial_b", registered=2, last_result_epoch=3)
    with pytest.raises(ValueError, match="is not in its folder trial_c"):
        checkpoint_manager_latest(metadata, "trial_c")
    assert checkpoint_manager_latest(metadata, "trial_b") == "checkpoint_000001"

    def state(folder: str) -> str:
        return json.dumps({"trial_data": [[json.dumps(
            {"trial_id": "b", "status": "RUNNING", "relative_logdir": folder}),
            json.dumps(metadata)]]})

    assert parse_state(state("trial_b"))["b"].checkpoint == "checkpoint_000001"
    assert parse_state(state("trial_c"))["b"].checkpoint == "checkpoint_000002"
