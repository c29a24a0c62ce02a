"""A trial killed by Ray's memory monitor: Ray Tune stops the whole study on it (Ray's own actor
manager raises, below), and the driver says what happened, where the concurrency is set and the
command that resumes, instead of Ray's traceback."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ray.air.execution._internal.actor_manager import RayActorManager
from ray.exceptions import OutOfMemoryError
from ray.tune import Tuner

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.studies.store import read_meta
from tests.studies.conftest import NO_SCHEDULER, write_spec

# Ray's own words for the kill this session's benchmark met (one line of them)
KILLED = ("1 worker(s) were killed due to the node running low on memory. Memory on the node "
          "(IP: 127.0.0.1, ID: 16f993f1) was 22.40GB used / 23.54GB limit (0.951707)")


def _what_tune_raises() -> RuntimeError:
    """What `Tuner.fit` raised: Ray's actor manager meeting a bare OutOfMemoryError (a memory
    monitor's kill) on a trial's task."""
    manager = SimpleNamespace(_failed_actor_ids=set(), _cleanup_actor=lambda **_: None)
    task = SimpleNamespace(_tracked_actor=SimpleNamespace(_on_error=None), _on_error=None)
    with pytest.raises(RuntimeError) as raised:
        RayActorManager._actor_task_failed(manager, task, OutOfMemoryError(KILLED))  # type: ignore[arg-type]
    return raised.value


def test_ray_tune_stops_on_a_memory_kill_rather_than_failing_the_trial() -> None:
    error = _what_tune_raises()
    # not routed to the trial (so max_failures never applies): if Ray changes this, the
    # driver's translation below is no longer needed
    assert str(error).startswith("Caught unexpected exception: 1 worker(s) were killed")
    assert isinstance(error.__cause__, OutOfMemoryError)


def test_a_study_whose_trial_ray_killed_for_memory_stops_with_the_resume_command(
    tmp_path: Path, tiny_data_dir: Path, ray_local: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mtl_tune.studies import launch_study
    from mtl_tune.studies.spec import load_spec

    top = ('name = "oom"\ntrainables = ["it10-warmup-decay"]\nsearch = "grid"\n'
           "max_concurrent = 3")
    path = write_spec(tmp_path, top, {"epochs": 2, "data_dir": str(tiny_data_dir)},
                      NO_SCHEDULER)
    root = tmp_path / "studies"
    error = _what_tune_raises()

    def killed(self: Any) -> None:
        raise error

    monkeypatch.setattr(Tuner, "fit", killed)
    with pytest.raises(MtlTuneError) as raised:
        launch_study(load_spec(str(path)), root, path.read_text(), verbose=0, simulate=True)
    message = str(raised.value)
    spec = root / "oom" / "spec.toml"
    line = spec.read_text().splitlines().index("max_concurrent = 3") + 1
    assert message.startswith("Ray's memory monitor killed a trial (the node had 22.40GB used "
                              "/ 23.54GB limit; Ray kills at RAY_memory_usage_threshold")
    assert f"max_concurrent = 3 trials at once ({spec}:{line})" in message
    assert f"with: mtl-tune study resume oom --storage {root} (if it is killed again" in message
    assert read_meta(root / "oom").finished_at is None  # left to resume


def test_other_errors_of_tune_are_not_called_memory_kills(tmp_path: Path) -> None:
    from mtl_tune.studies.driver._memory_kill import memory_kill_error

    assert memory_kill_error(RuntimeError("Caught unexpected exception: boom"), tmp_path,
                             "mtl-tune study resume x", 2) is None


def test_a_memory_kill_without_max_concurrent_in_the_spec_says_the_default(
    tmp_path: Path,
) -> None:
    from mtl_tune.studies.driver._memory_kill import memory_kill_error

    (tmp_path / "spec.toml").write_text('name = "oom"\nsearch = "grid"\n')
    bare = RuntimeError("Caught unexpected exception")
    bare.__cause__ = OutOfMemoryError("1 worker(s) were killed")  # no node figures in it
    error = memory_kill_error(bare, tmp_path, "mtl-tune study resume oom", 2)
    assert error is not None
    message = str(error)
    assert message.startswith("Ray's memory monitor killed a trial (the node had too little "
                              "memory left;")
    assert f"max_concurrent = 2 trials at once ({tmp_path / 'spec.toml'} (not set: the " \
           "default))" in message
