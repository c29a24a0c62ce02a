"""`mtl-tune report ablation|search`: a finished (or running) study as tables and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mtl_tune.cli._common import StorageOption, make_app
from mtl_tune.exceptions import ConfigError

app = make_app("Turn finished studies into ablation and search reports.")


ReportOut = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR", help="Report folder (default: a new one under the study's reports/; for a "
                 "study on an object store, in the current folder)."),
]
FormatsOption = Annotated[
    str, typer.Option(
        "--format", "--formats", metavar="FORMATS", help="Comma-separated: md,latex,csv,html.")
]
ForceOption = Annotated[bool, typer.Option("--force",
                                           help="Write into a non-empty --out folder.")]


def _formats(value: str) -> tuple[str, ...]:
    formats = tuple(f.strip() for f in value.split(",") if f.strip())
    if not formats:
        from mtl_tune.reports import FORMATS

        raise ConfigError(f"--format {value!r} on the command line names no format; give one or "
                          f"more of {','.join(FORMATS)}, comma-separated")
    return formats


@app.command("ablation")
def ablation(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The study's name.")],
    storage: StorageOption = None,
    out: ReportOut = None,
    formats: FormatsOption = "md,latex,csv,html",
    force: ForceOption = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Data folder whose test split the best checkpoints are scored on "
            "(default: the study's)."
        ),
    ] = None,
    resamples: Annotated[int, typer.Option(
        metavar="N", help="Bootstrap resamples and permutations.")] = 2000,
    seed: Annotated[int, typer.Option(metavar="N", help="Bootstrap and permutation seed.")] = 0,
    drop_diverged: Annotated[bool, typer.Option(
        "--drop-diverged", help="Leave the diverged trials (dev scores at a model that learned "
        "nothing) out of every table and mean; by default they count and are flagged.")] = False,
    seeds_advice: Annotated[
        bool,
        typer.Option("--seeds-advice",
                     help="Write no report: print the seeds each change needs (80% power) and "
                     "the `study launch` that runs them."),
    ] = False,
) -> None:
    """Dev and test tables in the paper's shape, significance, figures and an HTML page.

    Example: mtl-tune report ablation demo --format md,html
    """
    from mtl_tune.reports import report_ablation
    from mtl_tune.studies import existing_study, storage_root

    folder = existing_study(storage_root(storage), name)
    if seeds_advice:
        _print_seeds_advice(folder)
        return
    result = report_ablation(
        folder, out, _formats(formats), force, data_dir, n_resamples=resamples, seed=seed,
        drop_diverged=drop_diverged,
    )
    _print(result, folder)


@app.command("search")
def search(
    name: Annotated[str, typer.Argument(help="The study's name.")],
    others: Annotated[list[str] | None, typer.Argument(
        metavar="[OTHER]...", help="Other studies (same storage) whose expected best against "
        "budget is drawn over this one's.", show_default=False)] = None,
    storage: StorageOption = None,
    out: ReportOut = None,
    top_k: Annotated[int, typer.Option(metavar="K", help="Configurations to list.")] = 10,
    formats: FormatsOption = "md,latex,csv,html",
    force: ForceOption = False,
    color_by: Annotated[str | None, typer.Option(
        metavar="KEY", help="A population's family tree coloured by this mutated key "
        "(default: lr).")] = None,
) -> None:
    """The top-k configurations, parameter importances and the search figures; with OTHER
    studies, their expected best against budget beside this one's.

    Example: mtl-tune report search paper-search --top-k 5
    """
    from mtl_tune.reports import report_search
    from mtl_tune.studies import existing_study, storage_root

    root = storage_root(storage)
    folder = existing_study(root, name)
    compare = [existing_study(root, other) for other in others or []]
    _print(report_search(folder, out, top_k, _formats(formats), force, compare, color_by),
           folder)


def _print(result: Any, study: Path) -> None:
    from mtl_tune.reports import report_text, terminal_width
    from mtl_tune.studies import StudyStore

    typer.echo(report_text(result, terminal_width()))
    store = StudyStore.at(study)
    if store.on_store:
        typer.echo(f"the study is on an object store ({store.uri}): the report was written "
                   f"on this machine, in {result.folder}")


def _print_seeds_advice(folder: Path) -> None:
    from mtl_tune.reports import advice_text, seeds_advice, terminal_width

    typer.echo(advice_text(seeds_advice(folder), terminal_width()))
