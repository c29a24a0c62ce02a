"""Tune's TensorBoard logger, with each task's training loss every 50 optimizer steps.

Tune writes one point per reported epoch. A trial's report also carries the epoch's loss curve
(`CURVE_KEY`: a point every `CHECK_EVERY` steps and at the epoch's end, read from the device
once per epoch); this logger writes those points as `train_loss/<task>` against the run's
optimizer step, in the trial's events file, and keeps the list out of Tune's own scalars.
"""

from __future__ import annotations

from typing import Any

from ray.tune.logger import TBXLoggerCallback

from mtl_tune.studies.spec import CURVE_KEY, EpochReport


class StepLossLogger(TBXLoggerCallback):
    """Given to Tune in place of its default TensorBoard logger."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        # every result a trial reports is read whole here, once, whatever the verbosity (this
        # logger is always installed): a key missing from the report, or one it should not
        # hold, stops the study with the key's name
        curve = EpochReport.from_result(result).progress.train_loss_curve
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        writer = self._trial_writer[trial]
        for point in curve:
            step = int(point["step"])
            for task, loss in point.items():
                if task != "step":
                    writer.add_scalar(f"train_loss/{task}", float(loss), global_step=step)
        # Tune's logger writes the epoch's scalars and flushes once for both (a flush is an
        # fsync: one per result, not two)
        super().log_trial_result(
            iteration, trial, {k: v for k, v in result.items() if k != CURVE_KEY}
        )
