"""The driver's Tune callbacks: the study's trial record, fresh trial logs, a concise live view
(checkpoint retention is `_retention_callback`'s; imported here, where studies pickled before it
moved name it).

The only study module besides `_launch` and `_optuna_mirror` that imports Ray.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from ray import tune

from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.studies.driver._retention_callback import CheckpointRetention
from mtl_tune.studies.spec import ITERATION, better
from mtl_tune.studies.store import StudyStore, TuneFiles, append_event, read_trials

logger = logging.getLogger("mtl_tune.progress")

__all__ = ["CheckpointRetention", "ConciseProgress", "FreshTrialLogs", "TrialEvents"]


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
