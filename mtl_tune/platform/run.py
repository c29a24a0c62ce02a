"""One training run outside Ray Tune: the `mtl-tune train` command's library side."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.checkpoint import save_checkpoint
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.train import EpochResult, Trainer

METRICS_FILE = "metrics.json"


def prepare_out_dir(out: Path, force: bool) -> Path:
    """Creates `out`; refuses a non-empty folder unless `force` (nothing is silently replaced)."""
    if out.exists() and any(out.iterdir()):
        if not force:
            raise MtlTuneError(
                f"output folder {out} is not empty; pass another --out or --force to replace it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def train_run(
    config: TrainConfig,
    out: Path,
    on_epoch: Callable[[EpochResult], None] | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Trains `config.epochs` epochs, evaluating on dev after each.

    Writes `out/metrics.json` (one entry per epoch), `out/last/` (the latest checkpoint, with
    the optimizer state until the last epoch) and `out/best/` (the weights of the best dev
    `overall`, with its per-example dev predictions).

    Returns:
        The metrics of every epoch.
    """
    start = time.perf_counter()
    bundle = build_bundle(config, (config.pair_encoding,))
    trainer = Trainer(config, bundle.for_config(config))
    history: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        bar = tqdm(desc=f"epoch {epoch}/{config.epochs}", unit="step", disable=not progress)

        def advance(step: int, total: int, bar: tqdm = bar) -> None:
            bar.total = total
            bar.update(1)

        previous_best = trainer.best_overall
        result = trainer.run_epoch(epoch, on_step=advance)
        bar.close()
        history.append(result.metrics)
        predictions = result.evaluation.predictions
        final = epoch == config.epochs
        save_checkpoint(trainer, out / "last", result.metrics, predictions, optimizer=not final)
        if result.metrics["overall"] > previous_best:  # weights only: best/ is for prediction
            save_checkpoint(trainer, out / "best", result.metrics, predictions, optimizer=False)
        summary = {"config": config.to_dict(), "epochs": history,
                   "wall_seconds": time.perf_counter() - start}
        (out / METRICS_FILE).write_text(json.dumps(summary, indent=2))
        if on_epoch is not None:
            on_epoch(result)
    return history
