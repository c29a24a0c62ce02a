"""The library side of `mtl-tune train --replay STUDY:TRIAL`: a population-based trial's
schedule trained from scratch on fresh seeds, outside Ray Tune, each replay recorded in the
study (`replays/<trial>-seed<seed>.json`) for its reports.

The plan comes from the study's results (`studies.replay_plan`): the lineage's first
configuration and the values each epoch trained with. Each replay is a `train` run
(`platform.standalone.train_run`, its own `--out` folder, written whole) that follows the
schedule (`platform.replay`); its record is written once the run has ended, so a replay that
fails or is interrupted leaves the study as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import ConfigError
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.studies import ReplayPlan, open_study, replay_plan, study_results

RECORDED = (*METRIC_KEYS, "lr", "epoch_seconds")  # of each epoch, in the study's record


@dataclass(frozen=True)
class Replay:
    """One replay to train: the plan, its seed, its run folder."""

    plan: ReplayPlan
    seed: int
    out: Path


def parse_replay(value: str) -> tuple[str, str]:
    """`STUDY:TRIAL` as (study, trial).

    Raises:
        ConfigError: Not of that form.
    """
    study, sep, trial = value.rpartition(":")
    if not sep or not study or not trial:
        raise ConfigError(f"--replay must be STUDY:TRIAL (a study's name and one of its trial "
                          f"ids, as `study status` lists them), but got {value!r}")
    return study, trial


def plan_replays(
    folder: Path, trial: str, seeds: int, seed: int | None, out: Path | None,
) -> list[Replay]:
    """The replays to train: `seeds` fresh seeds (or the one `seed` given), each in its own
    folder (`out`, or `runs/replay-<study>-<trial>`, with `seed<N>` under it).

    Raises:
        ConfigError: Not a population-based study, no such trial, or a bad count.
    """
    if seeds < 1:
        raise ConfigError(f"`--seeds >= 1` must hold, but got --seeds {seeds}")
    if seed is not None and seeds != 1:
        raise ConfigError(f"--set seed={seed} names one seed, but --seeds {seeds} asks for "
                          f"{seeds}; give one of them")
    info = open_study(folder)
    plan = replay_plan(info, study_results(info), trial)
    chosen = [seed] if seed is not None else plan.fresh_seeds(seeds)
    base = out or Path("runs") / f"replay-{plan.study}-{trial}"
    return [Replay(plan, s, base / f"seed{s}") for s in chosen]


def replay_config(replay: Replay, overrides: dict[str, Any], data_dir: Path | None) -> TrainConfig:
    """The replay's configuration before its first change: the lineage's first, on the
    replay's seed, with the user's `overrides` (none of the schedule's keys); the data from
    `data_dir`, else the folder the study trained on when it is on this machine, else
    $MTL_TUNE_DATA or the `data fetch` folder."""
    from mtl_tune.datasets import data_folder
    from mtl_tune.platform.presets import resolve_config

    scheduled = sorted({k for row in replay.plan.schedule for k in row if k != "epoch"}
                       & set(overrides))
    if scheduled:
        raise ConfigError(f"the replayed schedule sets {', '.join(scheduled)} at each change; "
                          f"--set {scheduled[0]}=... would not replay it (leave it out)")
    if "epochs" in overrides:
        raise ConfigError(f"a replay trains the trial's {replay.plan.epochs} epochs, but "
                          f"epochs={overrides['epochs']} is given; leave it out")
    values = {**replay.plan.config, **overrides, "seed": replay.seed,
              "epochs": replay.plan.epochs}
    trained_on = values.pop("data_dir", None)
    config = resolve_config(None, values)
    if data_dir is None and trained_on and Path(str(trained_on)).is_dir():
        return config.replace(data_dir=str(trained_on))
    return config.replace(data_dir=str(data_folder(data_dir)))


def run_replay(
    replay: Replay, config: TrainConfig, force: bool = False,
    on_epoch: Callable[[Any], None] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
) -> str:
    """Trains the replay and records it in the study; returns the record's path there.

    Raises:
        MtlTuneError: The run's folder is refused or a file cannot be written (nothing is
            recorded then).
    """
    from mtl_tune.platform.replay import parse_schedule
    from mtl_tune.platform.standalone import train_run
    from mtl_tune.studies import write_replay

    plan = replay.plan
    about = {"replay": {"study": plan.study, "trial": plan.trial, "lineage": plan.lineage}}
    history = train_run(config, replay.out, on_epoch=on_epoch, on_step=on_step, force=force,
                        schedule=parse_schedule(plan.schedule), about=about)
    epochs = [{"epoch": int(h["epoch"]), **{k: float(h[k]) for k in RECORDED if k in h}}
              for h in history]
    return write_replay(plan.folder, {
        "trial": plan.trial, "seed": replay.seed, "out": str(replay.out.resolve()),
        "schedule": plan.schedule, "lineage": plan.lineage, "epochs": epochs,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
