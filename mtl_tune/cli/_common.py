"""What every noun's commands share: the app factory with the error boundary, options, tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mtl_tune.exceptions import ConfigError, MtlTuneError


class ErrorBoundary(TyperGroup):
    """The CLI's one error boundary: a library error (`MtlTuneError`) is printed to stderr as
    `Error: ...` and exits 1, without a traceback; anything else keeps its traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MtlTuneError as err:
            typer.echo(f"Error: {err}", err=True)
            raise typer.Exit(1) from None


def make_app(help_text: str) -> typer.Typer:
    return typer.Typer(
        cls=ErrorBoundary, help=help_text, no_args_is_help=True, pretty_exceptions_enable=False
    )


DataDirOption = Annotated[
    Path | None,
    typer.Option(help="Data folder (default: $MTL_TUNE_DATA, else the `data fetch` folder)."),
]
StorageOption = Annotated[
    str | None,
    typer.Option(help="Study storage root: a folder every node sees, or an object store URI "
                 "(s3://bucket/prefix) (default: $MTL_TUNE_STORAGE, else ~/.mtl-tune/studies)."),
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


def parse_sets(pairs: list[str] | None) -> dict[str, str]:
    """`["lr=1e-5", "pooling=mean"]` -> {"lr": "1e-5", "pooling": "mean"}."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes key=value, but got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def table(rows: list[dict[str, Any]]) -> str:
    import pandas as pd

    if not rows:
        return "(none)"
    return pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}")
