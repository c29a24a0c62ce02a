"""`mtl-tune data check|fetch`: what a data folder holds, and the course's files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from mtl_tune.cli._common import DataDirOption, make_app, table

app = make_app("Check and fetch the CS224N data files.")


@app.command("check")
def check(data_dir: DataDirOption = None) -> None:
    """Per task and split: status, file, rows read and skipped, label distribution."""
    from mtl_tune.datasets import data_folder
    from mtl_tune.platform.data_check import check_data

    folder = data_folder(data_dir)
    checks = check_data(folder)
    typer.echo(f"data folder: {folder}")
    typer.echo(table([{"task": c.task, "split": c.split, "status": c.status, "file": c.file,
                       "rows read": c.read, "skipped": c.skipped, "used": c.read - c.skipped,
                       "labels": c.labels} for c in checks], first=("labels", "file")))
    problems = [c.problem for c in checks if c.problem]
    for problem in problems:
        typer.echo(f"Error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)


@app.command("fetch")
def fetch(
    dest: Annotated[
        Path | None,
        typer.Option(metavar="DIR",
                     help="Target folder (default: ~/.mtl-tune/data, or $MTL_TUNE_HOME/data)."),
    ] = None,
    url: Annotated[str | None, typer.Option(
        metavar="URL", help="Base URL of the course's data/ folder.")] = None,
    if_missing: Annotated[
        bool, typer.Option(
            "--if-missing", help="Do nothing when $MTL_TUNE_DATA already names a data folder.")
    ] = False,
) -> None:
    """Download the course's public data files (retried, checked against pinned sha256s)."""
    from mtl_tune.datasets import DEFAULT_BASE_URL, default_data_dir, fetch_data
    from mtl_tune.platform.config import DATA_ENV

    configured = os.environ.get(DATA_ENV)
    if if_missing and dest is None and configured and Path(configured).is_dir():
        typer.echo(f"using the data in {configured} ({DATA_ENV}); nothing to fetch")
        return
    folder = dest or default_data_dir()
    fetched = fetch_data(folder, base_url=url or DEFAULT_BASE_URL)
    typer.echo(table([{"file": f.name, "bytes": f.size, "sha256": f.sha256[:16],
                       "status": f.status} for f in fetched]))
    typer.echo(f"data in {folder}; use --data-dir {folder} or {DATA_ENV}={folder}")
