"""The `mtl-tune` command line: one Typer app per noun, joined here, with one error boundary.

Commands parse, call one library function and print. Library errors (`MtlTuneError`) are caught
once, in `_Group.invoke`, printed to stderr and turned into exit code 1, without a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mtl_tune.exceptions import ConfigError, MtlTuneError


class _Group(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MtlTuneError as err:
            typer.echo(f"Error: {err}", err=True)
            raise typer.Exit(1) from None


def _typer(help_text: str) -> typer.Typer:
    return typer.Typer(
        cls=_Group, help=help_text, no_args_is_help=True, pretty_exceptions_enable=False
    )


app = _typer("Tune and ablate multi-task minBERT (SST-5, Quora, STS) on Ray Tune with Optuna.")
data_app = _typer("Check and fetch the CS224N data files.")
trainables_app = _typer("The registered Ray trainables (one per paper iteration).")
study_app = _typer("Launch, resume and inspect Optuna-driven studies on Ray Tune.")
report_app = _typer("Turn finished studies into ablation and search reports.")
app.add_typer(data_app, name="data")
app.add_typer(trainables_app, name="trainables")
app.add_typer(study_app, name="study")
app.add_typer(report_app, name="report")

DataDirOption = Annotated[
    Path | None,
    typer.Option(help="Data folder (default: $MTL_TUNE_DATA, else the `data fetch` folder)."),
]
StorageOption = Annotated[
    Path | None,
    typer.Option(help="Study storage root (default: $MTL_TUNE_STORAGE, else ~/.mtl-tune/studies)."),
]
AddressOption = Annotated[
    str | None,
    typer.Option(help="Ray cluster address (default: $RAY_ADDRESS, else Ray in this process)."),
]
VerboseOption = Annotated[
    int, typer.Option(help="0 quiet, 1 a concise line per trial event, 2-3 Ray's own tables.")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set lr=1e-5 (repeatable)."),
]


def _data_dir(data_dir: Path | None) -> Path:
    from mtl_tune.platform.data import DATA_ENV, resolve_data_dir
    from mtl_tune.platform.fetch import default_data_dir

    if data_dir is None and not os.environ.get(DATA_ENV) and default_data_dir().is_dir():
        return default_data_dir()
    return resolve_data_dir(data_dir).resolve()


def parse_sets(pairs: list[str] | None) -> dict[str, str]:
    """`["lr=1e-5", "pooling=mean"]` -> {"lr": "1e-5", "pooling": "mean"}."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes key=value, but got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    import pandas as pd

    if not rows:
        return "(none)"
    return pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}")


@data_app.command("check")
def data_check(data_dir: DataDirOption = None) -> None:
    """Per task and split: file, rows read, rows skipped, label distribution."""
    from mtl_tune.exceptions import DataError, MissingDataFile
    from mtl_tune.platform.data import SPLITS, TASKS, label_distribution, read_split, split_path

    folder = _data_dir(data_dir)
    rows, problems = [], []
    for task in TASKS:
        for split in SPLITS:
            row: dict[str, Any] = {"task": task, "split": split, "status": "ok", "file": "-",
                                   "rows read": 0, "skipped": 0, "used": 0, "labels": "-"}
            rows.append(row)
            try:
                path = split_path(folder, task, split)
                row["file"] = path.name
                examples = read_split(path, task, split)
            except DataError as err:
                problems.append(str(err))
                row["status"] = "missing" if isinstance(err, MissingDataFile) else "error"
                if err.path is not None:
                    row["file"] = Path(str(err.path)).name
                continue
            skipped = len(examples.skipped)
            row.update({"rows read": len(examples) + skipped, "skipped": skipped,
                        "used": len(examples), "labels": label_distribution(examples)})
    typer.echo(f"data folder: {folder}")
    typer.echo(_table(rows))
    if problems:
        for problem in problems:
            typer.echo(f"Error: {problem}", err=True)
        raise typer.Exit(1)


@data_app.command("fetch")
def data_fetch(
    dest: Annotated[
        Path | None,
        typer.Option(help="Target folder (default: ~/.mtl-tune/data, or $MTL_TUNE_HOME/data)."),
    ] = None,
    url: Annotated[str | None, typer.Option(help="Base URL of the course's data/ folder.")] = None,
    if_missing: Annotated[
        bool, typer.Option(help="Do nothing when $MTL_TUNE_DATA already names a data folder.")
    ] = False,
) -> None:
    """Download the course's public data files (resumable, sha256-checked)."""
    from mtl_tune.platform.data import DATA_ENV
    from mtl_tune.platform.fetch import DEFAULT_BASE_URL, default_data_dir, fetch_data

    configured = os.environ.get(DATA_ENV)
    if if_missing and dest is None and configured and Path(configured).is_dir():
        typer.echo(f"using the data in {configured} ({DATA_ENV}); nothing to fetch")
        return
    folder = dest or default_data_dir()
    fetched = fetch_data(folder, base_url=url or DEFAULT_BASE_URL)
    typer.echo(
        _table(
            [
                {
                    "file": f.name,
                    "bytes": f.size,
                    "sha256": f.sha256[:16],
                    "status": "verified"
                    if f.skipped
                    else ("resumed" if f.resumed else "downloaded"),
                }
                for f in fetched
            ]
        )
    )
    typer.echo(f"data in {folder}; use --data-dir {folder} or MTL_TUNE_DATA={folder}")


@trainables_app.command("list")
def trainables_list() -> None:
    """Name, description and preset of every registered trainable."""
    from mtl_tune.trainables import PRESETS

    for preset in PRESETS.values():
        typer.echo(f"{preset.name}: {preset.description}")
        typer.echo("    " + ", ".join(f"{k}={v}" for k, v in preset.overrides.items()))


def _epoch_row(metrics: dict[str, float]) -> dict[str, Any]:
    keys = (
        "epoch",
        "sst_acc",
        "para_acc",
        "sts_corr",
        "overall",
        "mean_score",
        "epoch_seconds",
        "examples_per_second",
    )
    return {k: metrics[k] for k in keys if k in metrics}


@app.command("train")
def train(
    name: Annotated[str, typer.Argument(help="A registered trainable, e.g. it7-cosrelu-tuned.")],
    sets: SetOption = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (overrides the preset).")] = None,
    max_examples: Annotated[int | None, typer.Option(help="Rows per task and split.")] = None,
    data_dir: DataDirOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default runs/NAME-TIME).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")] = False,
) -> None:
    """Train one trial without Ray Tune; write metrics.json and best/last checkpoints."""
    from mtl_tune.platform.run import train_run
    from mtl_tune.trainables import resolve_config

    overrides: dict[str, Any] = parse_sets(sets)
    if epochs is not None:
        overrides["epochs"] = epochs
    if max_examples is not None:
        overrides["max_examples"] = max_examples
    overrides["data_dir"] = str(_data_dir(data_dir))
    config = resolve_config(name, overrides)
    folder = out or Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    rows: list[dict[str, Any]] = []

    def show(result: Any) -> None:
        rows.append(_epoch_row(result.metrics))
        typer.echo(_table(rows))

    train_run(config, folder, on_epoch=show, force=force)
    typer.echo(
        f"wrote {folder / 'metrics.json'}, checkpoints {folder / 'best'} and {folder / 'last'}"
    )


@app.command("predict")
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint folder (e.g. runs/X/best).")],
    split: Annotated[str, typer.Option(help="dev or test.")] = "test",
    data_dir: DataDirOption = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the prediction files.")] = None,
) -> None:
    """Score a labeled split, or write the course's leaderboard files for an unlabeled one."""
    from mtl_tune.platform.predict import predict_data

    if split not in ("dev", "test", "train"):
        raise ConfigError(f"--split must be one of ('dev', 'test', 'train'), but got {split!r}")
    folder = out or checkpoint / f"predictions-{split}"
    result = predict_data(checkpoint, _data_dir(data_dir), split, folder)
    for task, why in result.missing.items():
        typer.echo(f"notice: {task} skipped: {why}", err=True)
    for task, path in result.files.items():
        rows = len(result.predictions[task].ids)
        labeled = result.predictions[task].labels is not None
        typer.echo(f"{task}: {rows} rows -> {path}{'' if labeled else ' (unlabeled: leaderboard)'}")
    if result.task_scores:
        scores = result.metrics or result.task_scores
        typer.echo(_table([{k: round(v, 4) for k, v in scores.items()}]))
        (folder / "scores.json").write_text(json.dumps(scores, indent=2))


@study_app.command("launch")
def study_launch(
    spec: Annotated[
        str,
        typer.Argument(
            help="A built-in spec (demo, paper-ablation, paper-search, search) or a TOML file."
        ),
    ],
    name: Annotated[str | None, typer.Option(help="Study name (default: the spec's).")] = None,
    storage: StorageOption = None,
    address: AddressOption = None,
    gpus_per_trial: Annotated[
        float | None, typer.Option(help="GPUs per trial (0.25 packs four trials on a GPU).")
    ] = None,
    sets: SetOption = None,
    data_dir: DataDirOption = None,
    optuna_storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (sqlite:///, postgresql://) or journal file path "
            "(default: optuna.db in the study folder)."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the plan and start nothing.")] = False,
    verbose: VerboseOption = 1,
) -> None:
    """Launch a study: resolve the spec, read the data once, run the trials on Ray Tune."""
    from mtl_tune.studies import describe, launch_study, load_spec, spec_path, storage_root

    overrides: dict[str, Any] = parse_sets(sets)
    study = load_spec(spec, overrides)
    if data_dir is not None or "data_dir" not in study.fixed:
        overrides["data_dir"] = str(_data_dir(data_dir))
        study = load_spec(spec, overrides)
    if name is not None:
        study = study.replace(name=name)
    if gpus_per_trial is not None:
        from mtl_tune.studies import Resources

        study = study.replace(resources=Resources(study.resources.cpu, gpus_per_trial))
    if dry_run:
        typer.echo(json.dumps(describe(study), indent=2, default=str))
        return
    root = storage_root(storage or study.storage or None)
    outcome = launch_study(
        study,
        root,
        spec_path(spec).read_text(),
        overrides=overrides,
        address=address,
        optuna_storage=_optuna_url(optuna_storage),
        verbose=verbose,
    )
    _print_outcome(outcome, root, study.name)


def _optuna_url(value: str | None) -> str | None:
    if value is None or "://" in value:
        return value
    return f"journal:{value}"


def _print_outcome(outcome: Any, root: Path, name: str) -> None:
    """The trial table and a summary; exit 1 if trials errored, 130 if interrupted."""
    from mtl_tune.studies import study_status

    typer.echo(_table(study_status(root, name).to_dict("records")))
    finished = outcome.trials - outcome.errors - outcome.unfinished
    typer.echo(
        f"study {name}: {outcome.trials} trials, {finished} finished, {outcome.errors} "
        f"errored, {outcome.unfinished} unfinished, in {outcome.wall_seconds:.0f} s; "
        f"folder {outcome.folder}"
    )
    _print_disk(root, name)
    if outcome.unfinished:
        typer.echo(f"interrupted; continue the study with:\n  {_resume_command(root, name)}",
                   err=True)
        raise typer.Exit(130)
    if outcome.errors:
        typer.echo(f"{outcome.errors} trial(s) errored; their errors are in:", err=True)
        for path in outcome.error_files:
            typer.echo(f"  {path}", err=True)
        raise typer.Exit(1)


def _resume_command(root: Path, name: str) -> str:
    from mtl_tune.studies import read_meta, study_folder

    address = read_meta(study_folder(root, name)).get("address", "")
    cluster = f" --address {address}" if address and address != "local" else ""
    return f"mtl-tune study resume {name} --storage {root}{cluster}"


@study_app.command("resume")
def study_resume(
    name: Annotated[str, typer.Argument(help="The study's name.")],
    storage: StorageOption = None,
    address: AddressOption = None,
    verbose: VerboseOption = 1,
    trust: Annotated[
        bool,
        typer.Option(help="Resume even if other users can write to the study folder (it holds "
                     "pickles that resuming loads: trust it like code)."),
    ] = False,
) -> None:
    """Resume a study: finished trials kept, unfinished ones continue from their checkpoints."""
    from mtl_tune.studies import resume_study, storage_root

    root = storage_root(storage)
    outcome = resume_study(root, name, address=address, verbose=verbose, trust=trust)
    _print_outcome(outcome, root, name)


@study_app.command("status")
def study_status_cmd(
    name: Annotated[str, typer.Argument(help="The study's name.")],
    storage: StorageOption = None,
) -> None:
    """One row per trial: state, config, epochs done, best dev metrics; the best marked *."""
    from mtl_tune.studies import INTERRUPTED, storage_root, study_driver, study_status

    root = storage_root(storage)
    table = study_status(root, name)
    typer.echo(_table(table.to_dict("records")))
    driver = study_driver(root, name)
    if driver is not None:
        typer.echo(f"running: driver {driver.describe()}")
    elif len(table) and (table["state"] == INTERRUPTED).any():
        typer.echo(f"no driver runs this study: it stopped before finishing; continue it with:"
                   f"\n  {_resume_command(root, name)}")
    _print_disk(root, name)


def _print_disk(root: Path, name: str) -> None:
    from mtl_tune.studies import disk_usage, human_bytes, study_folder

    folder = study_folder(root, name)
    typer.echo(f"disk: {human_bytes(disk_usage(folder))} in {folder}")


@study_app.command("list")
def study_list(storage: StorageOption = None) -> None:
    """The studies in the storage folder, with trial counts and best metric."""
    from mtl_tune.studies import list_studies, storage_root

    root = storage_root(storage)
    typer.echo(f"studies in {root}")
    typer.echo(_table(list_studies(root).to_dict("records")))


ReportOut = Annotated[
    Path | None,
    typer.Option(help="Report folder (default: a new one under the study's reports/)."),
]
FormatsOption = Annotated[str, typer.Option(help="Comma-separated: md,latex,csv,html.")]
ForceOption = Annotated[bool, typer.Option(help="Write into a non-empty --out folder.")]


def _formats(value: str) -> tuple[str, ...]:
    return tuple(f.strip() for f in value.split(",") if f.strip())


@report_app.command("ablation")
def report_ablation_cmd(
    name: Annotated[str, typer.Argument(help="The study's name.")],
    storage: StorageOption = None,
    out: ReportOut = None,
    formats: FormatsOption = "md,latex,csv,html",
    force: ForceOption = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Data folder whose test split the best checkpoints are scored on "
            "(default: the study's)."
        ),
    ] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """Dev and test tables in the paper's shape, significance, figures and an HTML page."""
    from mtl_tune.reports import report_ablation
    from mtl_tune.studies import storage_root
    from mtl_tune.studies._storage import existing_study

    folder = existing_study(storage_root(storage), name)
    result = report_ablation(
        folder, out, _formats(formats), force, data_dir, n_resamples=resamples, seed=seed
    )
    _print_report(result)


@report_app.command("search")
def report_search_cmd(
    name: Annotated[str, typer.Argument(help="The study's name.")],
    storage: StorageOption = None,
    out: ReportOut = None,
    top_k: Annotated[int, typer.Option(help="Configurations to list.")] = 10,
    formats: FormatsOption = "md,latex,csv,html",
    force: ForceOption = False,
) -> None:
    """The top-k configurations, parameter importances and the search figures."""
    from mtl_tune.reports import report_search
    from mtl_tune.studies import storage_root
    from mtl_tune.studies._storage import existing_study

    folder = existing_study(storage_root(storage), name)
    _print_report(report_search(folder, out, top_k, _formats(formats), force))


def _print_report(result: Any) -> None:
    for label, table in result.tables.items():
        typer.echo(f"\n{label}:")
        typer.echo(table.to_string(index=False))
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"\nreport written to {result.folder}")


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    progress = logging.getLogger("mtl_tune.progress")
    progress.setLevel(logging.INFO)
    progress.propagate = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    progress.addHandler(handler)
    app()
