"""Population-based training run by Ray Tune: a scheduler in the seed-group scheduler's shape.

A member of the population is a configuration over `seeds` seeds (a seed group, or one trial).
A trial that reaches the next generation point (every `interval` epochs) is PAUSED (Tune keeps
its checkpoint and frees its resources) until every member's running seeds are there; then the
generation is decided (`PopulationLedger`), appended to the study's `population.jsonl` before
anything changes, and carried out: each seed of an exploited member gets a copy of its donor's
seed's checkpoint at the point, made in its own folder on the storage (the one the decision
names, so the run continues from exactly it, and retention treats it as the member's own), and
once the seed is paused, the donor's configuration, mutated, and that copy to restart from.

Ray Tune's `PopulationBasedTraining` does not serve: its state is not restored with the
experiment (ray#30838), it exploits a trial whose checkpoint is not on storage yet (ray#27170),
and it judges one trial, never a group of seeds. Here a resumed driver replays the log; a
decision that Tune's saved state does not show yet (the driver was killed between the log and
Tune's next save) is carried out again on the restored trial, from the donor's checkpoint at the
point, before the trial runs on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.train import Checkpoint
from ray.train._internal.session import _TrainingResult
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from mtl_tune.studies.driver._population_ledger import PopulationLedger
from mtl_tune.studies.results import EPOCH
from mtl_tune.studies.spec import SEED_GROUP_KEY
from mtl_tune.studies.spec._pbt import PbtSpec
from mtl_tune.studies.store import (
    TuneFiles,
    append_group_events,
    here,
    local_path,
    read_group_events,
    uri_of,
)

progress = logging.getLogger("mtl_tune.progress")
IDENTITY_KEYS = ("seed", SEED_GROUP_KEY)  # a trial's own: never copied from a donor


@dataclass
class _Exploit:
    """One seed's part of an exploit: it continues from `donor`'s checkpoint at `point`."""

    point: int
    donor: str  # the donor seed's trial id
    config: dict[str, Any]  # the seed's whole configuration from then on
    copied: str | None = None  # the copy's folder name in the seed's own folder, once made


def member_config(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's configuration without what is its own (its seed, its member)."""
    return {k: v for k, v in config.items() if k not in IDENTITY_KEYS}


class PopulationScheduler(TrialScheduler):
    # one result at a time: a seed must be paused at the result that reaches a point
    _supports_buffered_results = False

    def __init__(
        self, log_path: Path, metric: str, mode: str, pbt: PbtSpec, seeds: tuple[int, ...],
        population: int, planned: int, seed: int,
    ) -> None:
        super().__init__()
        self._metric, self._mode = metric, mode
        self.log = uri_of(Path(log_path))  # a URI on a store: see `local_path`
        self.pbt, self.seeds, self.population = pbt, tuple(seeds), population
        self.planned, self.seed = planned, seed
        self._ledger: PopulationLedger | None = None  # replayed from the log on first use
        self._trials: dict[str, Trial] = {}
        self._exploits: dict[str, list[_Exploit]] = {}  # trial -> its exploits to carry out
        self._at: dict[str, int] = {}  # trial -> the last epoch it reported to this driver

    def __getstate__(self) -> dict[str, Any]:
        # the log, not the pickle, holds the state; Tune adds its trials again on restore
        return {**self.__dict__, "_ledger": None, "_trials": {}, "_exploits": {}, "_at": {}}

    @property
    def ledger(self) -> PopulationLedger:
        if self._ledger is None:
            self._ledger = PopulationLedger.replayed(
                read_group_events(here(local_path(self.log))), self.pbt, len(self.seeds),
                self._mode, self.planned, self.seed)
        return self._ledger

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return metric in (None, self._metric) and mode in (None, self._mode)

    def _identity(self, trial: Trial) -> tuple[str, int]:
        group = trial.config.get(SEED_GROUP_KEY)
        if group is None:
            return trial.trial_id, 0
        seed = trial.config.get("seed")
        return str(group), self.seeds.index(seed) if seed in self.seeds else 0

    def _log(self, events: list[dict[str, Any]]) -> None:
        append_group_events(here(local_path(self.log)), events)
        for event in events:
            if event["event"] != "generation":
                continue
            means = ", ".join(f"{m} {v:.4f}" for m, v in event["means"].items())
            progress.info("generation at epoch %d: %s ranked on %s (%s)", event["epoch"],
                          len(event["ranking"]), self._metric, means)
            for exploit in event["exploits"]:
                changed = {k: v for k, v in exploit["new"].items()
                           if exploit["old"].get(k) != v}
                progress.info("  %s continues from %s with %s", exploit["member"],
                              exploit["donor"], changed)

    # -- carrying a decision out --

    def _plan(self, decision: dict[str, Any]) -> None:
        """Each exploited seed's part, its copy made now: the donor may run on after this."""
        for exploit in decision["exploits"]:
            for member_trial, donor_trial, _ in exploit["seeds"].values():
                trial = self._trials.get(member_trial)
                if trial is None:
                    continue
                own = {k: trial.config[k] for k in IDENTITY_KEYS if k in trial.config}
                self._exploits.setdefault(member_trial, []).append(_Exploit(
                    int(decision["epoch"]), donor_trial, {**exploit["new"], **own}))
        self._copy_ready()

    def _copy_ready(self) -> None:
        """Makes the copies whose seed and donor have both reached the point."""
        for trial_id, queue in self._exploits.items():
            exploit = queue[0]
            trial, donor = self._trials.get(trial_id), self._trials.get(exploit.donor)
            if exploit.copied is not None or trial is None or donor is None:
                continue
            name = self.ledger.checkpoint_at(exploit.donor, exploit.point)
            if name is None or self._epoch(trial) < exploit.point:
                continue  # a replayed exploit: a seed that runs up to the point again
            storage: Any = trial.storage
            donor_storage: Any = donor.storage
            # named as the seed's next checkpoint: Tune counts its checkpoints in its storage
            # context (the newest's number; the one the seed just reported may not be counted
            # yet), and its own next one then comes after the copy
            index = max(storage.current_checkpoint_index,
                        *_numbers(self.ledger.checkpoints.get(trial_id, {}).values())) + 1
            copied = f"checkpoint_{index:06d}"
            TuneFiles(storage).copy_checkpoint(f"{donor_storage.trial_fs_path}/{name}",
                                               f"{storage.trial_fs_path}/{copied}")
            storage.current_checkpoint_index = index
            exploit.copied = copied

    def _holds(self, trial_id: str, epoch: int) -> bool:
        """Whether the trial waits for a copy: its own, or one made from its checkpoint."""
        own = self._exploits.get(trial_id)
        if own and own[0].copied is None and epoch >= own[0].point:
            return True
        return any(q[0].donor == trial_id and q[0].copied is None and epoch >= q[0].point
                   for q in self._exploits.values())

    def _take_exploit(self, trial: Trial) -> None:
        """Gives a paused seed its copied checkpoint and its new configuration."""
        exploit = self._exploits[trial.trial_id].pop(0)
        if not self._exploits[trial.trial_id]:
            del self._exploits[trial.trial_id]
        assert exploit.copied is not None
        trial.set_config(exploit.config)
        storage: Any = trial.storage
        path, filesystem = TuneFiles(storage).located(storage.trial_fs_path, exploit.copied)
        checkpoint = Checkpoint(path=path, filesystem=filesystem)
        manager: Any = trial.run_metadata.checkpoint_manager  # where Tune restarts it from
        manager._latest_checkpoint_result = _TrainingResult(
            checkpoint=checkpoint, metrics={EPOCH: exploit.point})
        trial.run_metadata.invalidate_cache()
        trial.invalidate_json_state()
        progress.info("%s continues after epoch %d from %s's checkpoint (as %s)",
                      trial.trial_id, exploit.point, exploit.donor, exploit.copied)

    def _replay(self, trial: Trial) -> None:
        """The logged exploits of a restored seed that Tune's saved state does not show: those
        after the last one whose configuration the trial has."""
        own = {k: trial.config[k] for k in IDENTITY_KEYS if k in trial.config}
        mine = []
        for point, event in sorted(self.ledger.decided.items()):
            for exploit in event["exploits"]:
                for member_trial, donor_trial, _ in exploit["seeds"].values():
                    if member_trial == trial.trial_id:
                        mine.append(_Exploit(point, donor_trial, {**exploit["new"], **own}))
        # compared as the log holds them (JSON: a tuple is a list there)
        taken = [i for i, exploit in enumerate(mine) if _as_logged(exploit.config)
                 == _as_logged(trial.config)]
        pending = mine[taken[-1] + 1:] if taken else mine
        if pending:
            self._exploits[trial.trial_id] = pending

    # -- Tune's hooks --

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._trials[trial.trial_id] = trial
        member, rank = self._identity(trial)
        self.ledger.add_trial(trial.trial_id, member, rank, member_config(trial.config))
        if trial.status in (Trial.TERMINATED, Trial.ERROR):  # restored, already ended
            self.ledger.ended.add(trial.trial_id)
            return
        self._replay(trial)
        if trial.status == Trial.PENDING and _epoch(trial) and (
                self.ledger.waits(trial.trial_id, _epoch(trial))
                or trial.trial_id in self._exploits):
            # Tune restores a paused seed as PENDING and starts every pending trial: added as
            # PAUSED again, it waits (or takes its exploit before it runs)
            trial.set_status(Trial.PAUSED)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if self._metric not in result or EPOCH not in result:
            return TrialScheduler.CONTINUE
        ledger, epoch = self.ledger, int(result[EPOCH])
        self._at[trial.trial_id] = epoch
        events = [ledger.result(trial.trial_id, epoch, float(result[self._metric]),
                                result.get("checkpoint_dir_name"))]
        waits = ledger.waits(trial.trial_id, epoch)
        decision = ledger.decide(self.population) if waits else None
        if decision is not None:
            events.append(decision)
        self._log(events)  # before anything is carried out
        if decision is not None:
            self._plan(decision)
        else:
            self._copy_ready()
        due = self._exploits.get(trial.trial_id, [])
        if (decision is None and waits) or self._holds(trial.trial_id, epoch) or (
                due and due[0].point <= epoch):  # paused, it takes its exploit
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._exploits.pop(trial.trial_id, None)  # an ended seed takes no exploit
        if trial.trial_id not in self.ledger.member_of or trial.trial_id in self.ledger.ended:
            return
        events = [self.ledger.end(trial.trial_id)]
        decision = self.ledger.decide(self.population)  # the others may have waited for it
        self._log([*events, *([decision] if decision is not None else [])])
        if decision is not None:
            self._plan(decision)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        ledger = self.ledger
        self._copy_ready()
        paused: list[Trial] = []
        new: list[Trial] = []
        for trial in self._trials.values():
            if trial.status not in (Trial.PENDING, Trial.PAUSED):
                continue
            epoch, queue = self._epoch(trial), self._exploits.get(trial.trial_id)
            if ledger.waits(trial.trial_id, epoch) or self._holds(trial.trial_id, epoch):
                continue
            if queue and queue[0].copied is not None and epoch >= queue[0].point:
                self._take_exploit(trial)
            (paused if trial.status == Trial.PAUSED else new).append(trial)
        for trials in (paused, new):
            if trials:
                return trials[0]
        return None

    def _epoch(self, trial: Trial) -> int:
        """The last epoch the trial reported: to this driver, else in Tune's restored state."""
        return self._at.get(trial.trial_id) or _epoch(trial)

    def debug_string(self) -> str:
        return (f"PopulationScheduler: {len(self.ledger.members)} members, "
                f"{len(self.ledger.decided)} generations")


def _epoch(trial: Trial) -> int:
    """The last epoch the trial reported, as Tune's (restored) state holds it; 0 before any."""
    return int(trial.last_result.get(EPOCH) or 0)


def _numbers(checkpoints: Any) -> list[int]:
    """The numbers of Tune's checkpoint folder names (`checkpoint_000003`: 3)."""
    return [int(n.rpartition("_")[2]) for n in checkpoints if n.rpartition("_")[2].isdigit()]


def _as_logged(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)
