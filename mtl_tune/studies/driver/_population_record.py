"""A population-based trial's schedule for the Optuna record, from where the driver sees it:
the population's log and the result rows of the trials of its lineage (`results._lineage`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mtl_tune.studies.results import by_epoch, read_result_rows
from mtl_tune.studies.results._lineage import Segment, schedule, trial_schedule
from mtl_tune.studies.store import population_events

logger = logging.getLogger(__name__)


def trial_folder(trial: Any) -> Path:
    """Where the driver reads a Tune trial's files: its folder, or on an object store the
    driver's own copy of it."""
    return Path(trial.path) if Path(trial.path).is_dir() else Path(trial.local_path)


def lineage_schedule(
    folder: Path, trial: Any, rows: Sequence[Mapping[str, Any]], trials: Sequence[Any],
    seen: Mapping[str, Sequence[Mapping[str, Any]]], metric: str, keys: Sequence[str],
) -> list[dict[str, Any]]:
    """The values of `keys` along the trial's lineage up to its last epoch, as changes; `rows`:
    its own result rows; a donor's are read from its folder, then those the driver has `seen`
    of a donor still running (Tune writes a trial's results to its folder in batches)."""
    by_id = {t.trial_id: t for t in trials}

    def rows_of(trial_id: str) -> Sequence[Mapping[str, Any]]:
        if trial_id == trial.trial_id:
            return rows
        stored = read_result_rows(trial_folder(by_id[trial_id])) if trial_id in by_id else []
        return [*stored, *seen.get(trial_id, [])]

    return _schedule(trial.trial_id, rows, population_events(folder), rows_of, metric, keys)


def ended_schedules(
    folder: Path, rows: Mapping[str, Sequence[Mapping[str, Any]]], metric: str,
    keys: Sequence[str],
) -> dict[str, list[dict[str, Any]]]:
    """Trial id -> the schedule of its lineage, for ended trials of a population from their
    result rows (`rows`: each trial's, complete once the experiment has ended): the end-of-run
    sync records a trial a killed driver left unrecorded with the schedule the live mirror
    would have given it."""
    events = population_events(folder)
    found = {t: _schedule(t, r, events, rows.__getitem__, metric, keys) for t, r in rows.items()}
    return {t: values for t, values in found.items() if values}


def _schedule(
    trial_id: str, rows: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]],
    rows_of: Callable[[str], Sequence[Mapping[str, Any]]], metric: str, keys: Sequence[str],
) -> list[dict[str, Any]]:
    epochs = by_epoch(rows, metric)
    if not epochs:
        return []
    try:
        return trial_schedule(trial_id, max(epochs), events, rows_of, keys)
    except KeyError as err:  # a donor's rows not on disk yet: the trial's own epochs alone
        logger.warning("%s: the schedule of its lineage is incomplete (%s); the record holds "
                       "its own epochs' values", trial_id, err)
        own = [Segment(e, e, trial_id, row.get("config") or {})
               for e, row in sorted(epochs.items())]
        return schedule(own, keys)
