"""The driver's Tune callback that keeps the study's results digest (`results.jsonl`), the
results `study status` reads without opening a trial's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import tune

from mtl_tune.studies.store import StudyStore, append_result, begin_digest, read_trials


class ResultDigest(tune.Callback):
    """Appends each result Tune reports for one experiment to the study's digest
    (`_result_digest`). Tune calls it before its own loggers write `result.json`."""

    def __init__(self, folder: Path, experiment: str) -> None:
        self.study, self.experiment = StudyStore.at(folder).uri, experiment  # as TrialEvents

    @property
    def folder(self) -> Path:
        return StudyStore.open(self.study).folder

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        # an experiment with no trial recorded yet: the digest holds all of it from here (a
        # resumed one had its `begin` line from its first driver, or keeps none)
        if not any(experiment == self.experiment for experiment, _ in read_trials(self.folder)):
            begin_digest(self.folder, self.experiment)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        append_result(self.folder, self.experiment, trial.trial_id, result)
