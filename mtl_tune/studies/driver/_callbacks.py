"""The driver's Tune callbacks: the study's trial record, checkpoint retention, fresh trial logs,
a concise live view.

The only study module besides `_launch` and `_optuna_mirror` that imports Ray.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from ray import tune

from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.studies.driver._group_retention import group_retention, members_of
from mtl_tune.studies.spec import ITERATION, SEED_GROUP_KEY, better
from mtl_tune.studies.store import StudyStore, TuneFiles, append_event, read_trials

logger = logging.getLogger("mtl_tune.progress")


class TrialEvents(tune.Callback):
    """Appends each trial event of one experiment to the study's record (`_trial_log`)."""

    def __init__(self, folder: Path, experiment: str) -> None:
        self.study, self.experiment = StudyStore.at(folder).uri, experiment  # see `open`
        self.seen: set[str] = set()
        self.paused: set[str] = set()  # trials last recorded as paused
        self.restored = False  # whether the trials Tune restored were compared with the record
        self._fresh_view()

    def _fresh_view(self) -> None:
        # a step looks at the trials Tune added since and those started (only they can pause)
        self.looked = 0  # how many of Tune's trials were looked at for creation
        self.live: dict[str, Any] = {}

    @property
    def folder(self) -> Path:
        return StudyStore.open(self.study).folder

    def __getstate__(self) -> dict[str, Any]:  # Tune's trials are not pickled with it
        return {**self.__dict__, "live": {}, "looked": 0}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "folder" in state:  # pickled by a version that kept the folder itself
            state["study"] = str(state.pop("folder"))
        self.__dict__.update({"live": {}, "looked": 0, **state})

    def _log(self, trial: Any, event: str, error_file: str | None = None) -> None:
        checkpoint = trial.checkpoint.path if trial.checkpoint is not None else None
        # a trial not yet placed (waiting for resources, or held back by the scheduler) has
        # no folder, and Tune raises for its path: the record gets it when the trial starts
        path = trial.path if trial.storage.trial_dir_name else None
        append_event(self.folder, self.experiment, trial.trial_id, event, dict(trial.config),
                     path, checkpoint, error_file)

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        # a resumed experiment: its trials are in the record already
        self.seen = {tid for exp, tid in read_trials(self.folder) if exp == self.experiment}
        self.paused = set()
        self.restored = False
        self._fresh_view()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if not self.restored:
            self.restored = True
            self._reconcile(trials)
            self.live = {t.trial_id: t for t in trials}  # restored: any of them may be paused
        if len(trials) < self.looked:  # Tune's list was rebuilt (not seen in Tune 2.x)
            self.looked = 0
        for trial in trials[self.looked:]:
            if trial.trial_id not in self.seen:
                self.seen.add(trial.trial_id)
                self._log(trial, "created")
        self.looked = len(trials)
        for trial in list(self.live.values()):
            # Tune has no pause hook: a paused trial is seen here (it starts again through
            # on_trial_start)
            if trial.status == "PAUSED" and trial.trial_id not in self.paused:
                self.paused.add(trial.trial_id)
                self._log(trial, "paused")
            elif trial.status in ("TERMINATED", "ERROR"):
                del self.live[trial.trial_id]

    def _reconcile(self, trials: list) -> None:
        """Brings the record in line with the trials Tune restored. Trials created after Tune
        last saved its state are gone from a resumed experiment (its searcher suggests them
        anew): the record says so, so that none stays unfinished. A trial Tune restored as ended
        that the record has as unfinished (its last event lost with a cut record) is recorded
        as Tune has it, so that resuming never waits for it again."""
        known = {trial.trial_id: trial for trial in trials}
        ended = {"TERMINATED": "finished", "ERROR": "errored"}
        for (experiment, trial_id), record in read_trials(self.folder).items():
            if experiment != self.experiment or record.state == "TERMINATED":
                continue
            trial = known.get(trial_id)
            if trial is None:  # an errored one too: Tune resumed from a state before it
                append_event(self.folder, experiment, trial_id, "discarded", record.config)
            elif record.state != "ERROR" and trial.status in ended:
                self._log(trial, ended[trial.status])

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.seen.add(trial.trial_id)
        self.paused.discard(trial.trial_id)
        self.live[trial.trial_id] = trial
        self._log(trial, "running")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # a trial that returned reports done; one a scheduler stopped early does not
        self._log(trial, "finished" if trial.last_result.get("done") else "stopped")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        name = trial.run_metadata.error_filename
        self._log(trial, "errored", str(Path(trial.path) / name) if name else None)


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
        self.settled: set[str] = set()  # trials left with what `keep` says: never looked at again
        self.trial_count = 0  # the trials `grouped` was built from
        self.stamp: str | None = None  # the saved state last pruned against ...
        self.saved: Mapping[str, Any] | None = None  # ... and its trials
        self.fresh = True  # an event since the last pass
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

    def _group_members(self, trials: list) -> None:
        if len(trials) != self.trial_count:  # Tune only adds trials: rebuilt when it does
            self.grouped, self.trial_count = members_of(trials), len(trials)

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
        if self.watched and time.monotonic() - self.checked >= self.every:
            self.prune()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._group_members(trials)
        for trial in trials:  # Tune saved its state (and waited for it) just before
            if trial.trial_id not in self.settled:
                self._watch(trial)
        self.prune()

    def prune(self) -> None:
        """One pass over the watched trials against Tune's newest saved state."""
        self.checked = time.monotonic()
        if not self.watched:
            return
        files = TuneFiles(next(iter(self.watched.values())).storage)
        try:
            stamp = files.state_stamp()
            if stamp is None or (stamp == self.stamp and not self.fresh):
                return
            # new events but the same saved state: its copy is made already
            saved = self.saved if stamp == self.stamp else files.saved_state()
        except OSError as err:  # a store outage costs space, never the study
            logger.warning("checkpoint retention skipped a pass: %s", err)
            return
        if saved is None:
            return
        self.stamp, self.saved, self.fresh = stamp, saved, False
        # only the groups of trials still watched: a pass costs the same at any study size
        open_groups = {t.config.get(SEED_GROUP_KEY) for t in self.watched.values()}
        members = [t for t in self.grouped.values() if t.config[SEED_GROUP_KEY] in open_groups]
        waiting, group_keep = group_retention(files, members, saved, self.metric, self.mode)
        for trial_id, trial in list(self.watched.items()):
            if trial_id in waiting:  # its group's best epoch may still move
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


class FreshTrialLogs(tune.Callback):
    """Uploads a restarting trial's logs before Tune's loggers download them.

    When a trial starts again from its checkpoint (a paused seed resumed, a retried failure),
    Tune's loggers copy its `result.json` and `progress.csv` from the storage over the driver's
    own copies, and the storage holds them as of Tune's last state save (every 10 s or more):
    epochs reported since then would be lost. Tune calls the study's callbacks before its
    loggers, so this one first uploads the driver's copies where they are the longer ones."""

    FILES = ("result.json", "progress.csv")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.checkpoint is None:  # a first start: the loggers restore nothing
            return
        files = TuneFiles(trial.storage)
        for name in self.FILES:
            local = Path(trial.local_path) / name
            if not local.is_file():
                continue
            try:
                files.upload_if_longer(local, trial.storage.trial_fs_path, name)
            except OSError as err:
                logger.warning("%s: %s not uploaded before its restart: %s", trial.trial_id,
                               name, err)


def clock(seconds: float) -> str:
    """1234.5 -> '0:20:34'."""
    return str(timedelta(seconds=round(max(0.0, seconds))))


class ConciseProgress(tune.Callback):
    """Logs `trial  epoch  metric (best so far)` lines to the `mtl_tune.progress` logger, and at
    each trial's end the trials done of the experiment's total, the time elapsed and an ETA."""

    def __init__(self, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode
        self.best: tuple[float, str] | None = None
        self.total: int | None = None
        self.started = time.monotonic()
        self.ended_here = 0  # trials that ended under this driver (a resumed one too)

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        self.total = total_num_samples
        self.started = time.monotonic()
        self.ended_here = 0

    def _better(self, value: float) -> bool:
        return self.best is None or better(value, self.best[0], self.mode)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        # the result was read whole by the StepLossLogger: its scores are there
        scores = {key: float(result[key]) for key in METRIC_KEYS}
        value = scores[self.metric]
        if self._better(value):
            self.best = (value, trial.trial_id)
        assert self.best is not None
        logger.info(
            "%s %-18s epoch %d  %s %.4f  (best %.4f, %s)  sst %.3f pd %.3f sts %.3f",
            trial.trial_id,
            trial.config.get("trainable", ""),
            result[ITERATION],
            self.metric,
            value,
            self.best[0],
            self.best[1],
            *(scores[key] for key in METRIC_KEYS[:3]),  # the three tasks'
        )

    def _progress(self, trials: list, trial: Any) -> str:
        """'3/8 trials done, 0:04:12 elapsed, ETA 0:07:00' (the ETA from this driver's pace)."""
        self.ended_here += 1
        ended = {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")}
        done = len(ended | {trial.trial_id})
        total = max(self.total or len(trials), done)
        elapsed = time.monotonic() - self.started
        left = total - done
        eta = "done" if left == 0 else f"ETA {clock(elapsed / self.ended_here * left)}"
        return f"{done}/{total} trials done, {clock(elapsed)} elapsed, {eta}"

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        logger.info("%s finished: %s", trial.trial_id, self._progress(trials, trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        logger.info("%s failed (see %s): %s", trial.trial_id, trial.path,
                    self._progress(trials, trial))
