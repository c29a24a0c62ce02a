"""The contract between a trial and the study's driver: the config keys a study adds to a
trial's configuration, and `TrialReport`, what a trial reports each epoch besides its scores.

The trainable builds one `TrialReport` per epoch and reports `report.metrics()` beside the
scores; the driver's parts (the patience stopper, the seed-group scheduler, the Optuna
mirror) read it back with `TrialReport.read(result)`, never key by key. A key the trainable
did not report fails there, loudly, instead of turning into a default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from mtl_tune.exceptions import MtlTuneError

# a seed group's id: the trials of one configuration over seeds (a study's key, not training's)
SEED_GROUP_KEY = "seed_group"


def study_keys(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's configuration split in (training keys, the study's own keys)."""
    ours = {SEED_GROUP_KEY}
    return ({k: v for k, v in config.items() if k not in ours},
            {k: v for k, v in config.items() if k in ours})


@dataclass(frozen=True)
class TrialReport:
    """One epoch's report of a trial, besides its scores.

    Attributes:
        patience: The trial's own patience in epochs (0: it never stops on its own; a seed of
            a seed group: its group's scheduler stops the group).
        stale_epochs: Epochs in a row without a dev `overall` better by `min_delta`.
        group_patience: The seed group's patience, judged on the seeds' mean (0: none).
        min_delta: The improvement of `overall` that counts as better.
        epochs_planned: The epochs the trial runs when nothing stops it.
        best_overall: The best dev `overall` so far.
        train_loss_curve: Each task's training loss at steps of the epoch:
            `({"step": 50, "sst": 1.6, ...}, ...)` (TensorBoard only).
    """

    patience: int
    stale_epochs: int
    group_patience: int
    min_delta: float
    epochs_planned: int
    best_overall: float
    train_loss_curve: Sequence[Mapping[str, float]] = ()

    def metrics(self) -> dict[str, Any]:
        """The report's keys and values, to report beside the scores."""
        values = asdict(self)
        values[CURVE_KEY] = [dict(point) for point in self.train_loss_curve]
        return values

    @classmethod
    def read(cls, result: Mapping[str, Any]) -> TrialReport:
        """The report inside a trial's reported result (scores and Tune's keys beside it), or
        inside a mean of several results (a seed group's): the loss curve is not read.

        Raises:
            MtlTuneError: A key of the report is missing: the trial was not run by this
                version's trainable.
        """
        names = list(REPORT_KEYS)
        missing = [name for name in names if name not in result]
        if missing:
            raise MtlTuneError(
                f"a trial's result lacks the report keys {missing} (it has {sorted(result)}); "
                "it was reported by another version of mtl-tune's trainable: resume the study "
                "with the version that launched it, or launch it again"
            )
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name in names:
            value = result[name]
            if kinds[name] == "int":
                value = int(value)
            elif kinds[name] == "float":
                value = float(value)
            values[name] = value
        return cls(**values)


CURVE_KEY = "train_loss_curve"  # the loss curve's key: TensorBoard reads it, the results frame not
# the keys `read` requires: every field but the loss curve
REPORT_KEYS = tuple(f.name for f in fields(TrialReport) if f.name != CURVE_KEY)
