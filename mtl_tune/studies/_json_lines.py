"""JSON-lines files that a writer appends to while others read them (Tune's result.json, the
study's trial record and seed-group log): every whole line, in order."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def read_json_lines(path: Path) -> list[Any]:
    """The parsed lines, oldest first; [] for a missing file. A half-written last line (a writer
    still at it, or killed while at it) is skipped quietly, any other unreadable one with a
    warning."""
    if not path.is_file():
        return []
    values = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except json.JSONDecodeError:
            (logger.debug if number == len(lines) else logger.warning)(
                "skipping unreadable line %s:%d", path, number)
    return values
