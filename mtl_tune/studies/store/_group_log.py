"""The study's logs of its schedulers' events: the seed-aware scheduler's (`seed-groups.jsonl`)
and population-based training's (`population.jsonl`). A scheduler appends each result it judged
on and each decision it made, before Tune acts on it, and replays its log after a driver
restart; reports read the decisions from it. Only the driver writes; readers import neither Ray
nor torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mtl_tune.studies.store._json_lines import read_json_lines
from mtl_tune.studies.store._storage import GROUPS_FILE, POPULATION_FILE
from mtl_tune.studies.store._study_store import StudyStore


def group_log_path(folder: Path) -> Path:
    return Path(folder) / GROUPS_FILE


def population_log_path(folder: Path) -> Path:
    return Path(folder) / POPULATION_FILE


def append_group_events(path: Path, events: Iterable[dict[str, Any]]) -> None:
    """Appends events, one JSON line each, synced to disk: a decision is never made twice."""
    lines = [json.dumps(e, default=float) for e in events]
    if not lines:
        return
    # on a store: uploaded before Tune acts on the decision
    StudyStore.at(path.parent).append_lines(path.name, lines, sync=True)


def read_group_events(path: Path) -> list[dict[str, Any]]:
    """The events in order; a half-written last line (a driver killed while writing) is skipped."""
    return [e for e in read_json_lines(path) if isinstance(e, dict) and "event" in e]


def group_decisions(folder: Path) -> list[dict[str, Any]]:
    """The seed-group decisions a study's scheduler made, in order (none for other studies):
    group, epoch, the seeds' values, their mean, the rung's cutoff, continue/stop and why."""
    return [e for e in read_group_events(group_log_path(folder)) if e["event"] == "decision"]


def population_events(folder: Path) -> list[dict[str, Any]]:
    """A population-based study's log in order (none for other studies): each result judged on
    (trial, epoch, value, checkpoint) and each generation (its point, ranking, seed means and
    exploits: member, donor, old and new configuration, and seed by seed the member's trial,
    the donor's trial and the checkpoint copied)."""
    return read_group_events(population_log_path(folder))
