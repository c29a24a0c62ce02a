"""The `mtl-tune` command line: one Typer app per noun (`cli/data.py`, `cli/study.py`,
`cli/report.py`, `cli/run.py` for train, predict and trainables), joined here.

Commands parse, call one library function and print. Library errors (`MtlTuneError`) are caught
once, at the boundary every app shares (`_common.ErrorBoundary`), printed to stderr and turned
into exit code 1, without a traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from mtl_tune import __version__
from mtl_tune.cli import data, report, run, study
from mtl_tune.cli._common import make_app, parse_sets

app = make_app("Tune and ablate multi-task minBERT (SST-5, Quora, STS) on Ray Tune with Optuna.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mtl-tune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Tune and ablate multi-task minBERT (SST-5, Quora, STS) on Ray Tune with Optuna."""


app.add_typer(data.app, name="data")
app.add_typer(run.trainables_app, name="trainables")
app.add_typer(study.app, name="study")
app.add_typer(report.app, name="report")
app.command("train")(run.train)
app.command("predict")(run.predict)
app.command("export")(run.export)

__all__ = ["app", "main", "parse_sets"]


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
