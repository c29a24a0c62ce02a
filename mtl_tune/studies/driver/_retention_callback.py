"""The driver's checkpoint retention, a Tune callback: a trial's superseded checkpoints deleted
once Ray Tune's saved state on the storage no longer needs them (`store._retention`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ray import tune

from mtl_tune.studies.driver._group_retention import group_retention, members_of
from mtl_tune.studies.spec import SEED_GROUP_KEY
from mtl_tune.studies.store import TuneFiles

logger = logging.getLogger("mtl_tune.progress")

# a pass costs what Tune's saved state costs to list and read, which grows with the trials
# (33 MB at 1,000): one is made once per trials/PASS_EVENTS checkpoint or end events, so that
# the cost per event stays flat (at each event below 100 trials, every 2 events at 100, every
# 20 at 1,000)
PASS_EVENTS = 50
# and a new copy of Tune's saved state, which is read whole (json), once per trials/TAKE_EVENTS
# events: Tune saves it every 10 s or so whatever the study's size, so taking each save made a
# pass's cost per event grow with the trials (at 1,000 trials, 99 copies of 33 MB over a
# launch); a pass in between prunes against the copy it has (which names older checkpoints: it
# deletes less, never what a restore needs)
TAKE_EVENTS = 10


class CheckpointRetention(tune.Callback):
    """Deletes a trial's superseded checkpoints once Tune's saved state on the storage no longer
    needs them, and an ended trial's down to what `keep` says, weights only (`_retention`,
    `_lean`). Tune itself keeps every checkpoint (`num_to_keep=None`), so no kill instant loses
    a resume point: a trial that ended but that the saved state still has running resumes from
    a checkpoint with its optimizer state."""

    def __init__(self, metric: str, mode: str, keep: str, every: float = 1.0) -> None:
        self.metric, self.mode, self.keep, self.every = metric, mode, keep, every
        self._fresh_start()

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        self._fresh_start()

    def _fresh_start(self) -> None:
        self.watched: dict[str, Any] = {}  # trials that may have checkpoints to delete
        self.dirty: set[str] = set()  # watched trials with a checkpoint or an end since a pass
        self.pruned_with: dict[str, Any] = {}  # trial -> (saved trial, kept) it was pruned with
        self.grouped: dict[str, Any] = {}  # every trial of a seed group, pending ones too
        self.by_group: dict[str, list[Any]] = {}  # ... by its group
        self.settled: set[str] = set()  # trials left with what `keep` says: never looked at again
        self.trial_count = 0  # the trials `grouped` was built from
        self.stamp: str | None = None  # the saved state last pruned against ...
        self.saved: Mapping[str, Any] | None = None  # ... and its trials
        self.fresh = True  # an event since the last pass
        self.events = 0  # ... how many
        self.since_taken = 0  # events since the saved state pruned against was taken
        self.checked = float("-inf")
        self.started = False

    def __getstate__(self) -> dict[str, Any]:  # pickled with the experiment: settings only
        return {k: self.__dict__[k] for k in ("metric", "mode", "keep", "every")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fresh_start()

    def _watch(self, trial: Any) -> None:
        self.watched[trial.trial_id] = trial
        self.dirty.add(trial.trial_id)
        self.fresh = True
        self.events += 1
        self.since_taken += 1

    def _group_members(self, trials: list) -> None:
        # Tune only adds trials, at the end of its list: the new ones are looked at (going over
        # the whole list at each addition cost the square of the trials over a study)
        if len(trials) < self.trial_count:  # a list rebuilt (not seen in Tune 2.x): afresh
            self.grouped, self.by_group, self.trial_count = {}, {}, 0
        if len(trials) > self.trial_count:
            added = members_of(trials[self.trial_count:])
            self.grouped.update(added)
            for trial in added.values():
                self.by_group.setdefault(str(trial.config[SEED_GROUP_KEY]), []).append(trial)
            self.trial_count = len(trials)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if not self.started:  # a resumed experiment: what a killed driver left unsettled
            self.started = True
            self.settled = TuneFiles(trials[0].storage).settled() if trials else set()
            for trial in trials:
                if trial.trial_id not in self.settled:
                    self._watch(trial)

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        self._watch(trial)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._watch(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._watch(trial)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._group_members(trials)
        if (self.watched and time.monotonic() - self.checked >= self.every
                and self.events >= self.trial_count // PASS_EVENTS):
            self.prune()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._group_members(trials)
        for trial in trials:  # Tune saved its state (and waited for it) just before
            if trial.trial_id not in self.settled:
                self._watch(trial)
        self.prune(final=True)

    def prune(self, final: bool = False) -> None:
        """One pass over the watched trials against Tune's newest saved state (`final`: the
        experiment's end), or the one taken lately (`TAKE_EVENTS`)."""
        self.checked, self.events = time.monotonic(), 0
        if not self.watched:
            return
        files = TuneFiles(next(iter(self.watched.values())).storage)
        previous = self.stamp
        try:
            stamp = files.state_stamp()
            if stamp is None or (stamp == self.stamp and not self.fresh):
                return
            if (stamp != self.stamp and self.saved is not None and not final
                    and self.since_taken < self.trial_count // TAKE_EVENTS):
                if not self.fresh:
                    return
                stamp = self.stamp  # the copy taken lately serves
            if stamp != self.stamp:  # (the last one let go first: it holds tens of MB)
                self.stamp, self.saved = None, None
            # new events but the same saved state: its copy is made already
            if stamp == self.stamp:
                saved = self.saved
            else:
                saved, self.since_taken = files.saved_state(stamp), 0
        except OSError as err:  # a store outage costs space, never the study
            logger.warning("checkpoint retention skipped a pass: %s", err)
            return
        if saved is None:
            return
        self.stamp, self.saved, self.fresh = stamp, saved, False
        watched = self.watched
        if stamp == previous:  # the copy of the last pass: only what had events since changes
            touched = {group_of(t) for tid, t in watched.items() if tid in self.dirty}
            touched.discard(None)
            watched = {tid: t for tid, t in watched.items()
                       if tid in self.dirty or group_of(t) in touched}
        # only the groups of trials still watched: a pass costs the same at any study size
        open_groups = sorted({g for t in watched.values() if (g := group_of(t)) is not None})
        members = [t for g in open_groups for t in self.by_group.get(g, ())]
        waiting, group_keep = group_retention(files, members, saved, self.metric, self.mode)
        for trial_id, trial in list(watched.items()):
            if trial_id in waiting:  # its group's best epoch may still move: the next copy of
                self.dirty.discard(trial_id)  # Tune's state looks at it again, not this one
                continue
            kept = group_keep.get(trial_id, frozenset())
            basis = (saved.get(trial_id), kept)
            if trial_id not in self.dirty and self.pruned_with.get(trial_id) == basis:
                continue  # nothing new for it since its last pass: its storage is left alone
            trial_dir = trial.storage.trial_fs_path
            try:
                settled = files.prune(trial_dir, saved.get(trial_id), self.metric, self.mode,
                                      self.keep, kept)
            except OSError as err:
                logger.warning("%s: superseded checkpoints not deleted: %s", trial_id, err)
                continue
            self.dirty.discard(trial_id)
            self.pruned_with[trial_id] = basis
            if settled:  # ended in the saved state: never resumed, so weights are enough
                try:
                    files.settle(trial_dir, trial_id)
                except OSError as err:
                    logger.warning("%s: not settled now: %s", trial_id, err)
                    continue
                self.settled.add(trial_id)
                del self.watched[trial_id]
                self.pruned_with.pop(trial_id, None)


def group_of(trial: Any) -> str | None:
    """The trial's seed group (None: it has none)."""
    group = trial.config.get(SEED_GROUP_KEY)
    return None if group is None else str(group)
