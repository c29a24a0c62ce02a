"""JSON-lines files that a writer appends to while others read them (Tune's result.json, the
study's trial record and seed-group log): every whole line, in order, and appends that never
join a line a killed writer left half-written."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def parse_json_lines(path: Path) -> tuple[list[Any], list[int]]:
    """The parsed lines, oldest first, and the numbers of the lines that are not JSON (a line
    torn by a writer killed while writing it, or one still being written); ([], []) for a missing
    file."""
    if not path.is_file():
        return [], []
    values, torn = [], []
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except json.JSONDecodeError:
            torn.append(number)
    return values, torn


def read_json_lines(path: Path) -> list[Any]:
    """The parsed lines, oldest first; [] for a missing file. A half-written last line (a writer
    still at it, or killed while at it) is skipped quietly, any other unreadable one with a
    warning that names it (file:line)."""
    values, torn = parse_json_lines(path)
    if torn:
        last = len(path.read_text(encoding="utf-8", errors="replace").splitlines())
        for number in torn:
            (logger.debug if number == last else logger.warning)(
                "%s:%d: skipping a line that is not JSON (a torn write)", path, number)
    return values


def append_json_lines(path: Path, lines: list[str], sync: bool = False) -> None:
    """Appends whole lines (each without its newline), flushed (`sync`: also on disk). A file
    whose last line a killed writer left without its newline gets one first, so that the new
    lines never join the torn one (which readers then skip and report)."""
    if not lines:
        return
    path = Path(path)
    prefix = ""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            prefix = "" if handle.read(1) == b"\n" else "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(prefix + "".join(line + "\n" for line in lines))
        handle.flush()
        if sync:
            os.fsync(handle.fileno())
