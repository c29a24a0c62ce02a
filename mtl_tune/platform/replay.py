"""A run that follows a hyperparameter schedule: from a given epoch on, other values of the keys
a run can take between two optimizer steps (a population-based trial's schedule, replayed from
scratch on a fresh seed).

At each change the run goes on as an exploited trial of population-based training does: the
weights, the optimizer's state, the lr schedule's step and the loss combination's state are
kept, and the new values are in force from the next step (the optimizer's rates, with the
schedule's base scaled so that warmup and decay go on from the step reached; the heads' dropout;
the sampler's temperature; the combination's parameters), the same `Trainer.load_state_dict`
that a restore from a checkpoint uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtl_tune.exceptions import ConfigError
from mtl_tune.platform.config import MUTABLE_KEYS, TrainConfig
from mtl_tune.platform.train import Trainer


@dataclass(frozen=True)
class ScheduleChange:
    """From epoch `epoch` on, the run trains with `values` (keys of `MUTABLE_KEYS`)."""

    epoch: int
    values: Mapping[str, Any]


def parse_schedule(changes: Sequence[Mapping[str, Any]]) -> tuple[ScheduleChange, ...]:
    """A schedule from its rows, `[{"epoch": 1, "lr": 2e-5, ...}, ...]` (as the study's record
    and `train --replay` keep it), checked: epochs from 1 and increasing, keys that can change.

    Raises:
        ConfigError: An epoch out of order or a key a run cannot take mid-run, named.
    """
    out: list[ScheduleChange] = []
    for row in changes:
        epoch = row.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            raise ConfigError(f"a schedule's `epoch` must be an integer >= 1, but got {epoch!r}")
        if out and epoch <= out[-1].epoch:
            raise ConfigError(f"a schedule's epochs must increase, but epoch {epoch} follows "
                              f"epoch {out[-1].epoch}")
        values = {k: v for k, v in row.items() if k != "epoch"}
        fixed = sorted(set(values) - set(MUTABLE_KEYS))
        if fixed:
            raise ConfigError(f"a schedule may change only {', '.join(MUTABLE_KEYS)} during a "
                              f"run, but it changes {', '.join(fixed)} at epoch {epoch}")
        out.append(ScheduleChange(epoch, values))
    return tuple(out)


def config_at(config: TrainConfig, schedule: Sequence[ScheduleChange], epoch: int) -> TrainConfig:
    """`config` with every change of `schedule` up to `epoch` applied."""
    values: dict[str, Any] = {}
    for change in schedule:
        if change.epoch <= epoch:
            values.update(change.values)
    return dataclasses.replace(config, **values) if values else config


def changes_at(schedule: Sequence[ScheduleChange], epoch: int) -> bool:
    """Whether `schedule` changes a value at `epoch`."""
    return any(change.epoch == epoch for change in schedule)


def switched(trainer: Trainer, config: TrainConfig) -> Trainer:
    """The trainer's run, continued with `config`: a new trainer (its model built afresh, so
    that its dropout is `config`'s) holding the run's whole state, as an exploited trial
    restores a checkpoint."""
    follower = Trainer(config, trainer.splits)
    follower.load_state_dict(trainer.state_dict())
    return follower
