"""Where a command may write its `--out` folder: never over its inputs or what the user made.

`train`, `predict` and `export` each write a folder of their own, whole (see `atomic`). Whatever
the flags, that folder may not be, contain or lie inside one of the command's inputs (the
checkpoint, the data folder, the study holding the checkpoint), nor be the file system root, the
home folder, or the current folder or one above it. An existing folder that is not empty is
replaced only with `--force`, and only when it holds the same command's earlier output (its
manifest file is there) and nothing else: `--force` never deletes a file the command did not
write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mtl_tune.exceptions import MtlTuneError

SHOWN = 5  # foreign entries named in a message


@dataclass(frozen=True)
class OutputKind:
    """What a command writes into its `--out` folder."""

    command: str  # "train", "predict", "export"
    what: str  # what it writes, for messages: "run", "predictions", "export"
    manifest: str  # the file that marks the folder as this command's output
    owns: Callable[[str], bool]  # whether a top-level name is one the command writes


def _relation(out: Path, source: Path) -> str | None:
    if out == source:
        return "is"
    if out in source.parents:
        return "contains"
    if source in out.parents:
        return "lies inside"
    return None


def refuse_special(out: Path, given: Path, what: str) -> None:
    """Refuses an `out` (resolved; `given` as the user wrote it) that is a file, the root, the
    home folder, or the current folder or one above it: no command writes its folder there."""
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    reason = None
    if out.exists() and not out.is_dir():
        reason = "is an existing file, not a folder"
    elif out == Path(out.anchor):
        reason = "is the root of the file system"
    elif out == home:
        reason = "is your home folder"
    elif out == cwd or out in cwd.parents:
        reason = "is the current folder or a folder above it"
    if reason:
        raise MtlTuneError(f"--out {given} {reason}; pass a new folder for the {what}, "
                           "e.g. --out runs/NAME")


def check_out(
    out: Path, kind: OutputKind, inputs: Mapping[str, Path | None], force: bool
) -> Path:
    """The resolved `out`, once it is a folder the command may write.

    Args:
        out: The `--out` folder as given.
        kind: What the command writes there.
        inputs: What the command reads, by name ("checkpoint", "data folder", ...); None
            entries are ignored.
        force: Whether the user passed `--force`.

    Raises:
        MtlTuneError: `out` is, contains or lies inside an input; is a file, the root, the
            home folder or the current folder (or above it); exists and is not empty without
            `force`; or, with `force`, holds anything but the command's own earlier output.
    """
    given = Path(out)
    resolved = given.expanduser().resolve()
    refuse_special(resolved, given, kind.what)
    for name, source in inputs.items():
        if source is None:
            continue
        relation = _relation(resolved, Path(source).expanduser().resolve())
        if relation:
            raise MtlTuneError(
                f"--out {given} {relation} the {name} {source}; `mtl-tune {kind.command}` never "
                "writes over what it reads, whatever the flags; pass a folder outside it"
            )
    if not resolved.is_dir():
        return resolved
    entries = sorted(p.name for p in resolved.iterdir())
    if not entries:
        return resolved
    earlier = f"mtl-tune {kind.command}"
    if not force:
        raise MtlTuneError(
            f"--out {given} already exists and is not empty; pass another --out, or --force to "
            f"replace it (--force replaces only the output of an earlier `{earlier}`)"
        )
    foreign = [e for e in entries if not kind.owns(e)]
    if not (resolved / kind.manifest).is_file():
        raise MtlTuneError(
            f"--out {given} is not the output of an earlier `{earlier}` (it has no "
            f"{kind.manifest}) and holds {_names(entries)}; --force replaces only the "
            "command's own output, so nothing was touched; pass another --out, or move those "
            "files away"
        )
    if foreign:
        raise MtlTuneError(
            f"--out {given} holds the output of an earlier `{earlier}` and also "
            f"{_names(foreign)}, which it did not write; --force replaces only the command's "
            "own output, so nothing was touched; move those files away, or pass another --out"
        )
    return resolved


def _names(entries: list[str]) -> str:
    shown = ", ".join(entries[:SHOWN])
    more = f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else ""
    return f"{shown}{more}"
