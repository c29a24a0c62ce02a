"""The contract between a trial and the study's driver: the config keys a study adds to a
trial's configuration, and `EpochReport`, everything a trial reports each epoch.

The trainable builds one `EpochReport` per epoch and reports `report.metrics()`: the scores,
the trainer's numbers, its `Placement` and its `TrialReport` (progress, patience, seed-group
keys, the loss curve). The driver's parts read a result back with `EpochReport.from_result`
(or `TrialReport.from_result` for the progress alone, as in a seed group's mean), never key by
key: a key the trainable did not report, or one it should not have, fails there with its name
instead of turning into a default. The keys Tune adds itself are named here once (`TUNE_KEYS`);
the score keys are `METRIC_KEYS` (`platform/metrics.py`). The keys in `result.json` are the
contract with every study on disk: they do not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.platform.metrics import METRIC_KEYS

# a seed group's id: the trials of one configuration over seeds (a study's key, not training's)
SEED_GROUP_KEY = "seed_group"
# the Optuna user attribute that names a trial's Ray trial id (the mirror writes it, reports read)
RAY_ID_ATTR = "ray_trial_id"

# the keys Tune adds to every reported result itself; a report holds none of them but
# `hostname`, which its `Placement` reports too (the same value)
ITERATION = "training_iteration"
TRIAL_ID = "trial_id"
TUNE_KEYS = frozenset({
    ITERATION, TRIAL_ID, "done", "timestamp", "time_this_iter_s", "time_total_s",
    "time_since_restore", "iterations_since_restore", "pid", "hostname", "node_ip", "date",
    "config", "checkpoint_dir_name", "should_checkpoint", "experiment_tag", "episodes_total",
    "timesteps_total", "timesteps_since_restore",
})
# the trainer's numbers of an epoch (`Trainer.run_epoch`): always these, `compile_seconds` in
# the epoch that compiled, and one per task of each family (`train_loss_sst`, ...)
TRAINING_KEYS = ("epoch", "eval_seconds", "lr", "epoch_seconds", "examples_per_second",
                 "tokens_per_second", "train_examples", "steps")
TRAINING_OPTIONAL = ("compile_seconds",)
TRAINING_FAMILIES = ("train_loss_", "task_weight_")


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
    def from_result(cls, result: Mapping[str, Any]) -> TrialReport:
        """The progress inside a trial's reported result (scores and Tune's keys beside it), or
        inside a mean of several results (a seed group's, which has no loss curve).

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
        curve = result.get(CURVE_KEY) or ()  # a group's mean has none
        return cls(**values, train_loss_curve=tuple(dict(point) for point in curve))


CURVE_KEY = "train_loss_curve"  # the loss curve's key: TensorBoard reads it, the results frame not
# the keys `from_result` requires: every field but the loss curve
REPORT_KEYS = tuple(f.name for f in fields(TrialReport) if f.name != CURVE_KEY)


@dataclass(frozen=True)
class Placement:
    """Where a trial ran: its host, Ray node, GPU ids (Ray's, "" for none), the CPUs Ray gave
    it and the torch device it trained on."""

    hostname: str
    node_id: str | None
    gpu_ids: str
    cpus: float
    device: str


PLACEMENT_KEYS = tuple(f.name for f in fields(Placement))


@dataclass(frozen=True)
class EpochReport:
    """Everything a trial reports for one epoch.

    Attributes:
        scores: The dev scores, by `METRIC_KEYS`.
        training: The trainer's numbers of the epoch (`TRAINING_KEYS` and their kin).
        placement: Where the trial ran.
        progress: Its progress, patience, seed-group keys and loss curve.
    """

    scores: Mapping[str, float]
    training: Mapping[str, float]
    placement: Placement
    progress: TrialReport

    def metrics(self) -> dict[str, Any]:
        """The report as Tune's metrics: one flat mapping, the keys `result.json` holds."""
        return {**self.scores, **self.training, **asdict(self.placement),
                **self.progress.metrics()}

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> EpochReport:
        """The report inside a result Tune handed back (its own `TUNE_KEYS` beside it).

        Raises:
            MtlTuneError: A key of the report is missing, or the result holds a key that is
                neither the report's nor Tune's (a misspelt or stray key), each named.
        """
        report_keys = {*METRIC_KEYS, *TRAINING_KEYS, *TRAINING_OPTIONAL, *PLACEMENT_KEYS,
                       *REPORT_KEYS, CURVE_KEY}
        unknown = sorted(k for k in result if k not in report_keys and k not in TUNE_KEYS
                         and not k.startswith(TRAINING_FAMILIES))
        missing = [k for k in (*METRIC_KEYS, *TRAINING_KEYS, *PLACEMENT_KEYS) if k not in result]
        if unknown or missing:
            raise MtlTuneError(
                f"a trial's result does not match the epoch report: missing {missing}, "
                f"unknown {unknown}; a trainable reports `EpochReport.metrics()` and nothing "
                "else (a study launched by another version of mtl-tune: resume it with that "
                "version)"
            )
        training = {k: float(v) for k, v in result.items() if k != CURVE_KEY and (
            k in TRAINING_KEYS or k in TRAINING_OPTIONAL or k.startswith(TRAINING_FAMILIES))}
        return cls(
            scores={k: float(result[k]) for k in METRIC_KEYS},
            training=training,
            placement=Placement(**{k: result[k] for k in PLACEMENT_KEYS}),
            progress=TrialReport.from_result(result),
        )
