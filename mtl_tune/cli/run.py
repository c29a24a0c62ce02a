"""`mtl-tune train`, `predict`, `export` and `trainables list`: single runs and models, no Ray."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from mtl_tune.cli._common import (
    DataDirOption,
    SetOption,
    StorageOption,
    make_app,
    parse_sets,
    table,
)
from mtl_tune.exceptions import ConfigError

trainables_app = make_app("The registered Ray trainables (one per paper iteration).")
EPOCH_COLUMNS = ("epoch", "sst_acc", "para_acc", "sts_corr", "overall", "mean_score",
                 "epoch_seconds", "examples_per_second")


@trainables_app.command("list")
def trainables_list() -> None:
    """Name, description and preset of every registered trainable."""
    from mtl_tune.platform.presets import PRESETS
    from mtl_tune.terminal import terminal_width, wrap

    width = terminal_width()
    for preset in PRESETS.values():
        typer.echo("\n".join(wrap(f"{preset.name}: {preset.description}", width, "    ")))
        overrides = ", ".join(f"{k}={v}" for k, v in preset.overrides.items())
        typer.echo("\n".join(wrap("    " + overrides, width, "    ")))


def train(
    name: Annotated[str | None, typer.Argument(
        metavar="TRAINABLE",
        help="A registered trainable, e.g. it7-cosrelu-tuned (not with --replay).")] = None,
    sets: SetOption = None,
    epochs: Annotated[int | None, typer.Option(
        metavar="N", help="Epochs (overrides the preset).")] = None,
    max_examples: Annotated[int | None, typer.Option(
        metavar="N", help="Rows per task and split.")] = None,
    data_dir: DataDirOption = None,
    out: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Output folder (default runs/NAME-TIME; "
                                  "with --replay, runs/replay-STUDY-TRIAL, a seedN folder "
                                  "per seed).")
    ] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an earlier run in --out (nothing else is replaced).")] = False,
    replay: Annotated[str | None, typer.Option(
        metavar="STUDY:TRIAL",
        help="Train a population-based trial's schedule from scratch on a fresh seed (its "
        "lineage's values epoch by epoch); recorded in the study for its report.")] = None,
    seeds: Annotated[int, typer.Option(
        metavar="N", help="With --replay: replays on N fresh seeds, one after another.")] = 1,
    storage: StorageOption = None,
) -> None:
    """Train one trial without Ray Tune; write metrics.json and best/last checkpoints.

    Example: mtl-tune train it7-cosrelu-tuned --set lr=3e-5 --epochs 1 --out runs/it7

    Example: mtl-tune train --replay pbt-demo:3f2a1_00004 --seeds 3
    """
    overrides: dict[str, Any] = parse_sets(sets)
    for key, value in (("epochs", epochs), ("max_examples", max_examples)):
        if value is None:
            continue
        if key in overrides:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{flag} {value} and --set {key}={overrides[key]} both set {key} "
                              "on the command line; give one")
        overrides[key] = value
    given = overrides.get("data_dir")
    if data_dir is not None and given is not None:
        raise ConfigError(f"--data-dir {data_dir} and --set data_dir={given} both name the data "
                          "folder on the command line; give one")
    if replay is not None:
        if name is not None:
            raise ConfigError(f"--replay {replay} trains the trial's own trainable, but "
                              f"TRAINABLE {name} is given too; give one of them")
        _replay(replay, overrides, data_dir, out, force, seeds, storage)
        return
    if name is None:
        raise ConfigError("train needs a TRAINABLE (`mtl-tune trainables list`) or "
                          "--replay STUDY:TRIAL")
    if seeds != 1:
        raise ConfigError(f"--seeds {seeds} counts the replays of --replay; a run of a "
                          "trainable trains one seed (--set seed=N)")

    from mtl_tune.datasets import data_folder
    from mtl_tune.platform.presets import resolve_config
    from mtl_tune.platform.standalone import train_run

    config = resolve_config(name, overrides)  # a mistyped name or key first, then the data
    chosen, given_as = (data_dir, "--data-dir") if given is None else (
        Path(given), f"--set data_dir={given}")
    config = config.replace(data_dir=str(data_folder(chosen, given_as)))
    folder = out or Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    show, step = _progress(config.epochs)
    train_run(config, folder, on_epoch=show, on_step=step, force=force)
    typer.echo(
        f"wrote {folder / 'metrics.json'}, checkpoints {folder / 'best'} and {folder / 'last'}"
    )


def _progress(epochs: int) -> tuple[Any, Any]:
    """(on_epoch, on_step) of a run: a bar per epoch, the epochs' table after each."""
    from tqdm.auto import tqdm

    rows: list[dict[str, Any]] = []
    bars: dict[int, Any] = {}

    def step(epoch: int, done: int, total: int) -> None:
        if epoch not in bars:  # one bar per epoch (setdefault would build one per step)
            bars[epoch] = tqdm(desc=f"epoch {epoch}/{epochs}", unit="step", total=total)
        bar = bars[epoch]
        bar.update(1)
        if done == total:
            bar.close()

    def show(result: Any) -> None:
        rows.append({k: result.metrics[k] for k in EPOCH_COLUMNS if k in result.metrics})
        typer.echo(table(rows))

    return show, step


def _replay(value: str, overrides: dict[str, Any], data_dir: Path | None, out: Path | None,
            force: bool, seeds: int, storage: str | None) -> None:
    from mtl_tune.replays import parse_replay, plan_replays, replay_config, run_replay
    from mtl_tune.studies import existing_study, storage_root

    study, trial = parse_replay(value)
    if "data_dir" in overrides:
        data_dir = Path(str(overrides.pop("data_dir")))
    seed = overrides.pop("seed", None)
    folder = existing_study(storage_root(storage), study)
    replays = plan_replays(folder, trial, seeds, None if seed is None else int(seed), out)
    configs = [replay_config(r, overrides, data_dir) for r in replays]  # all checked first
    plan = replays[0].plan
    changes = ", ".join(
        f"epoch {row['epoch']}: " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else
                                             f"{k}={v}" for k, v in row.items() if k != "epoch")
        for row in plan.schedule)
    typer.echo(f"replaying trial {trial} of {study} ({plan.epochs} epochs; {changes}) on "
               f"seed(s) {', '.join(str(r.seed) for r in replays)}")
    for replay, config in zip(replays, configs, strict=True):
        show, step = _progress(config.epochs)
        record = run_replay(replay, config, force, show, step)
        typer.echo(f"wrote {replay.out / 'metrics.json'}; recorded in {study}: {record}")


def predict(
    checkpoint: Annotated[
        str,
        typer.Argument(metavar="CHECKPOINT",
                       help="A checkpoint folder (e.g. runs/X/best), or its URI on an object "
                       "store (s3://bucket/.../checkpoint_000002: downloaded once to the cache)."),
    ],
    split: Annotated[str, typer.Option(metavar="dev|test", help="dev or test.")] = "test",
    data_dir: DataDirOption = None,
    out: Annotated[
        Path | None,
        typer.Option(metavar="DIR",
                     help="Folder for the prediction files, written whole (default: "
                     "predictions-SPLIT in the current folder)."),
    ] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace earlier predictions in --out (nothing else).")] = False,
) -> None:
    """Score a labeled split, or write the course's leaderboard files for an unlabeled one.

    Example: mtl-tune predict runs/it7/best --split dev --out it7-dev-predictions
    """
    from mtl_tune.datasets import data_folder
    from mtl_tune.platform.predict import predict_data
    from mtl_tune.studies import study_holding

    if split not in ("dev", "test", "train"):
        raise ConfigError(f"--split must be one of ('dev', 'test', 'train'), but got {split!r}")
    local = _checkpoint_folder(checkpoint)
    folder = out or Path(f"predictions-{split}")
    result = predict_data(local, data_folder(data_dir), split, folder, force=force,
                          study=study_holding(local))
    for task, why in result.missing.items():
        typer.echo(f"notice: {task} skipped: {why}", err=True)
    for task, predictions in result.predictions.items():
        labeled = predictions.labels is not None
        typer.echo(f"{task}: {len(predictions.ids)} rows -> {result.files[task]}"
                   f"{'' if labeled else ' (unlabeled: leaderboard)'}")
    if result.task_scores:
        scores = result.metrics or result.task_scores
        typer.echo(table([{k: round(v, 4) for k, v in scores.items()}]))


def _checkpoint_folder(checkpoint: str) -> Path:
    """The local folder of a checkpoint argument: a path or `file://` URI, or a store URI
    fetched to the cache."""
    from mtl_tune.studies import fetch_uri, file_uri_path, is_store_uri

    if is_store_uri(checkpoint):
        return fetch_uri(checkpoint)
    return file_uri_path(checkpoint) or Path(checkpoint)


def export(
    checkpoint: Annotated[str, typer.Argument(
        metavar="CHECKPOINT",
        help="A checkpoint folder or store URI (e.g. runs/it7/best, s3://b/p/.../checkpoint_2).")],
    out: Annotated[Path, typer.Option(
        metavar="DIR", help="The folder to write (new, or empty).")],
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an earlier export in --out (nothing else is replaced).")] = False,
) -> None:
    """Write a checkpoint as a Hugging Face BERT + sentence-transformers folder, heads beside.

    Example: mtl-tune export runs/it7/best --out it7-model
    """
    from mtl_tune.platform.export import export_checkpoint
    from mtl_tune.studies import study_holding

    local = _checkpoint_folder(checkpoint)
    folder = export_checkpoint(local, out, force, study=study_holding(local))
    typer.echo(f"exported {checkpoint} -> {folder}")
    typer.echo(f"  transformers:          AutoModel.from_pretrained({str(folder)!r})")
    typer.echo(f"  sentence-transformers: SentenceTransformer({str(folder)!r})")
    typer.echo(f"  mtl-tune:              mtl-tune predict {folder} --split dev")
