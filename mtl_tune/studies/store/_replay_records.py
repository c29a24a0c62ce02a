"""The replays of a population-based study's trials (`mtl-tune train --replay`): one file per
replay, `replays/<trial>-seed<seed>.json`, written whole through the study's store when the
replay ends, so that replays run at the same time on several machines never write one file.
Reports read them beside the population's own scores."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from mtl_tune.studies.store._study_store import StudyStore

logger = logging.getLogger(__name__)

REPLAYS_DIR = "replays"
_NAME = re.compile(r"^(?P<trial>.+)-seed(?P<seed>-?\d+)\.json$")


def replay_record_name(trial: str, seed: int) -> str:
    """The record's path in the study folder."""
    return f"{REPLAYS_DIR}/{trial}-seed{seed}.json"


def write_replay(folder: Path, record: dict[str, Any]) -> str:
    """Writes a replay's record (`trial`, `seed`, per-epoch `epochs`, ...) whole; returns its
    path in the study folder.

    Raises:
        MtlTuneError: It cannot be written; an earlier record of it is kept.
    """
    name = replay_record_name(str(record["trial"]), int(record["seed"]))
    (Path(folder) / REPLAYS_DIR).mkdir(exist_ok=True)
    StudyStore.at(folder).write_text(name, json.dumps(record, indent=1, default=float) + "\n")
    return name


def read_replays(folder: Path) -> list[dict[str, Any]]:
    """The study's replay records, by trial then seed; none for other studies. A record that
    does not read (cut, or edited by hand) is left out with a warning naming it."""
    records = []
    for path in sorted((Path(folder) / REPLAYS_DIR).glob("*.json")):
        if _NAME.match(path.name) is None:
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(record, dict) or not isinstance(record.get("epochs"), list):
                raise ValueError("not a replay record (no `epochs` list)")
        except (OSError, ValueError) as err:
            logger.warning("replay record %s left out: %s", path, err)
            continue
        records.append(record)
    return sorted(records, key=lambda r: (str(r.get("trial")), int(r.get("seed", 0))))
