"""What every noun's commands share: the app factory with the error boundary, options, tables."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperGroup

from mtl_tune.exceptions import ConfigError, Interrupted, MtlTuneError

# what a user's paths and disks cause, each with how to fix it; other OSErrors are bugs
_PATH_FIXES = {
    errno.ENOSPC: "no space left on the device: free some space and run again",
    errno.EDQUOT: "disk quota exceeded: free some space and run again",
    errno.EACCES: "permission denied: choose a place you may write (e.g. with --out) or change "
                  "its permissions",
    errno.EPERM: "not permitted: choose a place you may write (e.g. with --out)",
    errno.EROFS: "the file system is read-only: choose another place (e.g. with --out)",
    errno.EEXIST: "a file is in the way: give a folder that does not exist yet, or move it",
    errno.ENOTDIR: "a file is where a folder must be: give a folder, or move the file",
    errno.EISDIR: "a folder is where a file must be: give a file, or move the folder",
    errno.ELOOP: "a symbolic link loop: fix or remove the link",
    errno.ENAMETOOLONG: "the name is too long for the file system: choose a shorter one",
}


class PlainArgument(TyperArgument):
    """An argument shown as Click shows it: `NAME` in the usage line and the help, without
    Typer's Python type (`NAME <str>`) or its braces (`{NAME}`); its metavar says what it is."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


class ErrorBoundary(TyperGroup):
    """The CLI's one error boundary: a library error (`MtlTuneError`), or a file system error a
    user's paths or disk caused (permissions, a full disk, a file in a folder's place), is
    printed to stderr as `Error: ...` and exits 1, without a traceback; anything else keeps its
    traceback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            for param in command.params:
                if type(param) is TyperArgument:  # Typer builds them; no hook to pick the class
                    param.__class__ = PlainArgument

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Interrupted as err:  # Ctrl-C: what was kept, and the shell's 128 + SIGINT
            typer.echo(f"Interrupted: {err}", err=True)
            raise typer.Exit(130) from None
        except MtlTuneError as err:
            typer.echo(f"Error: {err}", err=True)
            raise typer.Exit(1) from None
        except OSError as err:
            if err.errno not in _PATH_FIXES or not err.filename:
                raise
            where = _innermost_frame(err)
            typer.echo(f"Error: cannot use {err.filename} ({err.strerror}, at {where}): "
                       f"{_PATH_FIXES[err.errno]}", err=True)
            raise typer.Exit(1) from None


def _innermost_frame(err: BaseException) -> str:
    """`file:line` of the innermost mtl_tune frame that raised `err`."""
    import traceback

    frames = [f for f in traceback.extract_tb(err.__traceback__) if "mtl_tune" in f.filename]
    frame = frames[-1] if frames else traceback.extract_tb(err.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def make_app(help_text: str) -> typer.Typer:
    return typer.Typer(
        cls=ErrorBoundary, help=help_text, no_args_is_help=True, pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )


DataDirOption = Annotated[
    Path | None,
    typer.Option(metavar="DIR",
                 help="Data folder (default: $MTL_TUNE_DATA, else the `data fetch` folder)."),
]
StorageOption = Annotated[
    str | None,
    typer.Option(metavar="DIR|URI",
                 help="Study storage root: a folder every node sees, or an object store URI "
                 "(s3://bucket/prefix) (default: $MTL_TUNE_STORAGE, else ~/.mtl-tune/studies)."),
]
AddressOption = Annotated[
    str | None,
    typer.Option(metavar="HOST:PORT",
                 help="Ray cluster address (default: $RAY_ADDRESS, else Ray in this process)."),
]
VerboseOption = Annotated[
    int, typer.Option(metavar="0-3",
                      help="0 quiet, 1 a concise line per trial event, 2-3 Ray's own tables.")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE",
                 help="Override a config key: --set lr=1e-5 (repeatable)."),
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


def table(rows: list[dict[str, Any]], first: tuple[str, ...] = ()) -> str:
    """Rows as a table fitted to the terminal (`first`: the columns it drops first), one
    format per number column: scores to 4 decimals, whole numbers whole, others 4 digits.
    Scores, tasks and trial states carry their names (`mtl_tune.names`), not their keys."""
    import pandas as pd

    from mtl_tune.names import named, score_name
    from mtl_tune.terminal import fitted

    if not rows:
        return "(none)"
    frame = pd.DataFrame([named(row) for row in rows])
    return fitted(pd.DataFrame({c: _column_text(str(c), frame[c]) for c in frame.columns}),
                  first=tuple(score_name(c) for c in first))


def _is_score(column: str) -> bool:
    from mtl_tune.names import SCORE_NAMES

    return column in SCORE_NAMES.values() or column.removeprefix("best ") in SCORE_NAMES.values()


def _column_text(name: str, values: Any) -> list[str]:
    import math
    from numbers import Real

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    present = [v for v in values if not missing(v)]
    numbers = [v for v in present if isinstance(v, Real) and not isinstance(v, bool)]
    if not numbers or len(numbers) < len(present):
        return ["–" if missing(v) else str(v) for v in values]
    if _is_score(name):
        form = "{:.4f}"
    elif all(float(v).is_integer() for v in numbers):
        form = "{:.0f}"
    else:
        form = "{:.4g}"
    return ["–" if missing(v) else form.format(v) for v in values]
