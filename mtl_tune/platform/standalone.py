"""One training run outside Ray Tune: the `mtl-tune train` command's library side.

A run never loses the folder it replaces: the data, the backbone and the config are checked
before anything is written, the run is built in a temporary sibling of `--out`, and it replaces
an existing `--out` (with `--force`) only once its first checkpoint is complete.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from mtl_tune.exceptions import Interrupted, MtlTuneError
from mtl_tune.platform.atomic import replace_file, staging_of, swap_in
from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.checkpoint import save_checkpoint
from mtl_tune.platform.checkpoint_files import drop_optimizer_state
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.out_folder import OutputKind, check_out
from mtl_tune.platform.replay import ScheduleChange, changes_at, config_at, switched
from mtl_tune.platform.train import EpochResult, Trainer

METRICS_FILE = "metrics.json"


RUN_KIND = OutputKind("train", "run", METRICS_FILE,
                      frozenset({METRICS_FILE, "best", "last"}).__contains__)


def check_run_out(config: TrainConfig, out: Path, force: bool) -> Path:
    """The resolved `out` of a run of `config`, once `out_folder.check_out` allows it: it never
    overlaps the data folder or a local backbone, and `force` replaces only an earlier run."""
    inputs = {"data folder": Path(config.data_dir) if config.data_dir else None,
              "backbone": Path(config.backbone) if config.backbone else None}
    return check_out(out, RUN_KIND, inputs, force)


def train_run(
    config: TrainConfig,
    out: Path,
    on_epoch: Callable[[EpochResult], None] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
    force: bool = False,
    schedule: Sequence[ScheduleChange] = (),
    about: dict | None = None,
) -> list[dict[str, float]]:
    """Trains `config.epochs` epochs, evaluating on dev after each; with `config.patience`,
    stops after that many epochs in a row without a dev `overall` better by `min_delta`.

    Writes `out/metrics.json` (one entry per epoch), `out/last/` (the latest checkpoint; the
    run's final one, at the last epoch or an early stop, holds weights only) and `out/best/`
    (the weights of the best dev `overall`, with its per-example dev predictions).

    Args:
        on_epoch: Called with each epoch's result, after its checkpoints are written.
        on_step: Called as `on_step(epoch, step, steps)` after each optimizer step (progress).
        force: Replace an earlier run at `out`, once the new run's first checkpoint is
            written (a folder holding anything else is refused).
        schedule: Values that change during the run, from the epoch each names (`replay`):
            `config` is the run's before the first change.
        about: Kept in `metrics.json` as it is (what the run replays, say).

    Returns:
        The metrics of every epoch.

    Raises:
        MtlTuneError: `out` is refused (`check_run_out`), or the data, backbone or config are
            bad; `out` is then left exactly as it was.
    """
    start = time.perf_counter()
    out = check_run_out(config, out, force)
    bundle = build_bundle(config, (config.pair_encoding,))
    config = config_at(config, schedule, 1)  # what the run starts with
    trainer = Trainer(config, bundle.for_config(config))
    staging = staging_of(out)
    shutil.rmtree(staging, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir()
    folder = staging  # where the run is written: the staging folder until its first epoch
    history: list[dict[str, float]] = []
    epoch = 1
    try:
        for epoch in range(1, config.epochs + 1):
            if epoch > 1 and changes_at(schedule, epoch):
                trainer = switched(trainer, config_at(config, schedule, epoch))
            previous_best = trainer.best_overall
            step_hook = None if on_step is None else partial(on_step, epoch)
            result = trainer.run_epoch(epoch, on_step=step_hook)
            # the epoch's scores and timings, and the run's progress after it (stale epochs)
            history.append({**result.metrics, **trainer.progress().record()})
            final = epoch == config.epochs or trainer.should_stop
            _write_epoch(trainer, folder, result, previous_best, final=final)
            summary = {"config": config.to_dict(), "epochs": history,
                       "wall_seconds": time.perf_counter() - start,
                       "stopped_early": trainer.should_stop, **(about or {})}
            if schedule:
                summary["schedule"] = [{"epoch": c.epoch, **c.values} for c in schedule]
            replace_file(folder / METRICS_FILE, json.dumps(summary, indent=2).encode())
            if folder == staging:
                swap_in(staging, out)
                folder = out
            if on_epoch is not None:
                on_epoch(result)
            if trainer.should_stop:
                break
    except OSError as err:
        raise MtlTuneError(f"cannot write the run in {out}: {err}") from err
    except KeyboardInterrupt:
        raise _interrupted(config, out, folder == out, epoch) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return history


def _interrupted(config: TrainConfig, out: Path, written: bool, epoch: int) -> Interrupted:
    """Ctrl-C in epoch `epoch`: a run that has written epochs keeps them, marked interrupted,
    weights only (`train` starts over; it cannot resume); one that has not leaves `out` as it
    was."""
    where = f"in epoch {epoch} of {config.epochs}"
    if not written:
        return Interrupted(f"{where}, before its first checkpoint: nothing was written and "
                           f"{out} is as it was")
    drop_optimizer_state(out / "last")
    summary = json.loads((out / METRICS_FILE).read_text(encoding="utf-8"))
    done = len(summary["epochs"])  # those written, whatever the moment of the interrupt
    summary["interrupted"] = {"in_epoch": epoch, "epochs_done": done}
    replace_file(out / METRICS_FILE, json.dumps(summary, indent=2).encode())
    return Interrupted(
        f"{where}: {out} keeps the {done} finished epoch(s), metrics.json marked "
        "interrupted, best/ and last/ weights only (a run cannot resume: train again to go on)"
    )


def _write_epoch(
    trainer: Trainer, folder: Path, result: EpochResult, previous_best: float, final: bool
) -> None:
    predictions = result.evaluation.predictions
    save_checkpoint(trainer, folder / "last", result.metrics, predictions, optimizer=not final)
    if result.metrics["overall"] > previous_best:  # weights only: best/ is for prediction
        save_checkpoint(trainer, folder / "best", result.metrics, predictions, optimizer=False)
