"""The population scheduler's hooks, driven as Tune drives them, with stand-in trials: who pauses
where, which checkpoint each exploited seed gets, and what a resumed driver carries out again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.fs
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from mtl_tune.platform.checkpoint_files import OPTIMIZER_FILE
from mtl_tune.studies.driver._population_scheduler import PopulationScheduler
from mtl_tune.studies.results import EPOCH
from mtl_tune.studies.spec._pbt import parse_pbt
from mtl_tune.studies.store import population_events

PBT = parse_pbt({"quantile": 0.25, "mutations": {"lr": {"loguniform": [1e-5, 1e-3]}}}, "t")


class _Storage:
    def __init__(self, folder: Path) -> None:
        self.trial_fs_path = str(folder)
        self.experiment_fs_path = str(folder.parent)
        self.storage_filesystem = pyarrow.fs.LocalFileSystem()
        self.current_checkpoint_index = -1  # Tune's: the newest checkpoint's number

    @property
    def checkpoint_dir_name(self) -> str:
        return f"checkpoint_{self.current_checkpoint_index:06d}"


class _Manager:
    _latest_checkpoint_result: Any = None


class _Metadata:
    def __init__(self) -> None:
        self.checkpoint_manager = _Manager()

    def invalidate_cache(self) -> None:
        pass


class _Trial:
    """What the scheduler reads and sets of a Tune trial; `report` writes a checkpoint."""

    def __init__(self, trial_id: str, lr: float, root: Path) -> None:
        self.trial_id, self.status = trial_id, Trial.PENDING
        self.config: dict[str, Any] = {"lr": lr, "seed": 0, "trainable": "simulated",
                                       "heads": ("sst", "para")}  # a list in the log
        self.last_result: dict[str, Any] = {}
        self.storage = _Storage(root / trial_id)
        self.run_metadata = _Metadata()

    def set_config(self, config: dict[str, Any]) -> None:
        self.config = config

    def set_status(self, status: str) -> None:
        self.status = status

    def invalidate_json_state(self) -> None:
        pass

    def report(self, epoch: int, value: float) -> dict[str, Any]:
        self.storage.current_checkpoint_index += 1  # as Tune's worker, before it saves
        name = self.storage.checkpoint_dir_name
        folder = Path(self.storage.trial_fs_path) / name
        folder.mkdir(parents=True)
        (folder / OPTIMIZER_FILE).write_text(f"{self.trial_id} after epoch {epoch}")
        self.last_result = {EPOCH: epoch, "overall": value, "checkpoint_dir_name": name}
        return self.last_result


def _scheduler(folder: Path) -> PopulationScheduler:
    return PopulationScheduler(folder / "population.jsonl", "overall", "max", PBT, (0,),
                               population=4, planned=3, seed=1)


SCORES = {"a": 0.5, "b": 0.7, "c": 0.6, "d": 0.4}  # at epoch 1: d continues from b


def _population(tmp_path: Path) -> tuple[PopulationScheduler, dict[str, _Trial]]:
    scheduler = _scheduler(tmp_path)
    trials = {name: _Trial(name, 1e-4, tmp_path / "tune") for name in SCORES}
    for trial in trials.values():
        scheduler.on_trial_add(None, trial)  # type: ignore[arg-type]
        trial.status = Trial.RUNNING
    return scheduler, trials


def _result(scheduler: PopulationScheduler, trial: _Trial, epoch: int, value: float) -> str:
    result = trial.report(epoch, value)
    # Tune's driver counts a checkpoint after its scheduler saw the result that brought it
    trial.storage.current_checkpoint_index -= 1
    decision = scheduler.on_trial_result(None, trial, result)  # type: ignore[arg-type]
    trial.storage.current_checkpoint_index += 1
    if decision == TrialScheduler.PAUSE:
        trial.status = Trial.PAUSED
    return decision


def _run_all(scheduler: PopulationScheduler) -> set[str]:
    """The trials Tune starts, one after another, until the scheduler chooses none."""
    started = set()
    while (trial := scheduler.choose_trial_to_run(None)) is not None:  # type: ignore[arg-type]
        trial.status = Trial.RUNNING
        started.add(trial.trial_id)
    return started


def test_members_wait_at_the_point_and_the_worst_continues_from_the_best_checkpoint(
    tmp_path: Path
) -> None:
    scheduler, trials = _population(tmp_path)
    for name in "abc":  # the first three wait for the fourth
        assert _result(scheduler, trials[name], 1, SCORES[name]) == TrialScheduler.PAUSE
        assert scheduler.choose_trial_to_run(None) is None  # type: ignore[arg-type]
    # the fourth decides the generation; it is the one exploited: it pauses to take it
    assert _result(scheduler, trials["d"], 1, SCORES["d"]) == TrialScheduler.PAUSE
    (generation,) = [e for e in population_events(tmp_path) if e["event"] == "generation"]
    assert generation["ranking"] == ["b", "c", "a", "d"]
    (exploit,) = generation["exploits"]
    assert exploit["seeds"] == {"0": ["d", "b", "checkpoint_000000"]}
    # the donor's checkpoint is copied into the member's folder now, as its next checkpoint
    copy = tmp_path / "tune" / "d" / "checkpoint_000001"
    assert (copy / OPTIMIZER_FILE).read_text() == "b after epoch 1"
    # the paused ones run on; the member first takes its new values and the copy
    assert _run_all(scheduler) == set(SCORES)
    d = trials["d"]
    assert json.loads(json.dumps(d.config)) == {**exploit["new"], "seed": 0}
    assert d.config["lr"] != 1e-4
    restart = d.run_metadata.checkpoint_manager._latest_checkpoint_result.checkpoint
    assert restart.path == str(copy)
    # its next own checkpoint comes after the copy (its own at the point counted meanwhile)
    assert d.report(2, 0.8)["checkpoint_dir_name"] == "checkpoint_000003"


def test_a_resumed_driver_carries_out_a_logged_exploit_that_tune_did_not_save(
    tmp_path: Path
) -> None:
    scheduler, trials = _population(tmp_path)
    for name in "abcd":
        _result(scheduler, trials[name], 1, SCORES[name])
    (exploit,) = [e for e in population_events(tmp_path)
                  if e["event"] == "generation"][0]["exploits"]
    # killed before the member took it; Tune restores the four as PENDING, at epoch 1, with
    # the configurations it saved (d's old one), and a new driver replays the log
    resumed = _scheduler(tmp_path)
    restored = {}
    for name, old in trials.items():
        trial = _Trial(name, 1e-4, tmp_path / "restored")
        trial.storage.current_checkpoint_index = 0
        trial.last_result = old.last_result
        (Path(trial.storage.trial_fs_path) / "checkpoint_000000").mkdir(parents=True)
        (Path(trial.storage.trial_fs_path) / "checkpoint_000000" / OPTIMIZER_FILE).write_text(
            f"{name} after epoch 1")
        resumed.on_trial_add(None, trial)  # type: ignore[arg-type]
        restored[name] = trial
    assert restored["d"].status == Trial.PAUSED  # it takes the exploit before it runs
    assert _run_all(resumed) == set(SCORES)
    assert restored["d"].config == {**exploit["new"], "seed": 0}
    copy = tmp_path / "restored" / "d" / "checkpoint_000001"
    assert (copy / OPTIMIZER_FILE).read_text() == "b after epoch 1"
    # no generation is decided again
    assert len([e for e in population_events(tmp_path) if e["event"] == "generation"]) == 1
    # a driver resumed once Tune had saved the exploit (the new configuration) leaves it be
    again = _scheduler(tmp_path)
    for trial in restored.values():
        trial.status = Trial.PENDING
        trial.config["heads"] = ("sst", "para")  # as Tune keeps it
        again.on_trial_add(None, trial)  # type: ignore[arg-type]
    assert not again._exploits and restored["d"].status == Trial.PENDING


def test_a_donor_checkpoint_without_optimizer_state_is_never_exploited_into(
    tmp_path: Path
) -> None:
    scheduler, trials = _population(tmp_path)
    for name in "abc":
        _result(scheduler, trials[name], 1, SCORES[name])
    (tmp_path / "tune" / "b" / "checkpoint_000000" / OPTIMIZER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="checkpoint .*b/checkpoint_000000 is not on the "
                       "storage with its optimizer state"):
        _result(scheduler, trials["d"], 1, SCORES["d"])
