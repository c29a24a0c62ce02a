"""The study's own copy of its trials' results: `results.jsonl`, one JSON line per reported
epoch, appended by the driver as Tune reports it.

Each trial's results are in its `result.json` (Ray Tune's), but on an object store reading
them means listing the whole study (every trial's logs and checkpoints: thousands of objects)
and reading a file per trial, and Tune uploads them only when it saves its state. The digest
is one appended study file (uploaded by parts at each result, like the trial record), so
`study status` reads a thousand trials' results from a few objects.

An experiment's lines count only from its `begin` line, which its driver writes before the
experiment's first trial: an experiment launched before the digest existed (or resumed by a
driver that does not keep it) has none, and its readers read `result.json` as before. A line
holds the result as Tune reported it, less its config (the trial record has it) and the step
losses; a trial restored from a checkpoint reports some epochs again, and readers keep the
last line of each epoch, as they do with `result.json`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.studies.spec import CURVE_KEY
from mtl_tune.studies.store._json_lines import read_json_lines
from mtl_tune.studies.store._storage import RESULTS_FILE
from mtl_tune.studies.store._study_store import StudyStore

logger = logging.getLogger(__name__)

# the result's keys a line leaves out: the config (the record's), Tune's bookkeeping and the
# loss curve (TensorBoard's)
LEFT_OUT = ("config", "experiment_tag", "should_checkpoint", CURVE_KEY)


def _append(folder: Path, line: dict[str, Any]) -> None:
    try:
        StudyStore.at(folder).append_lines(RESULTS_FILE, [json.dumps(line, default=str)])
    except MtlTuneError as err:  # on a store: the part goes up again with the next line
        logger.warning("results digest not uploaded (again with the next result): %s", err)


def begin_digest(folder: Path, experiment: str) -> None:
    """Marks the digest complete for `experiment` from here on (before its first trial)."""
    _append(folder, {"experiment": experiment, "begin": True})


def append_result(folder: Path, experiment: str, trial_id: str,
                  result: Mapping[str, Any]) -> None:
    """Appends one reported result of a trial (flushed; on a store, uploaded at once)."""
    row = {k: v for k, v in result.items() if k not in LEFT_OUT}
    _append(folder, {"experiment": experiment, "trial_id": trial_id, "result": row})


def read_digest(folder: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Experiment -> trial id -> its results in order, for the experiments whose digest is
    complete (a `begin` line); {} when the study keeps none."""
    begun: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for line in read_json_lines(Path(folder) / RESULTS_FILE):
        if not isinstance(line, dict) or not isinstance(line.get("experiment"), str):
            continue
        if line.get("begin") is True:
            begun.setdefault(line["experiment"], {})
        elif line["experiment"] in begun and isinstance(line.get("result"), dict):
            trials = begun[line["experiment"]]
            trials.setdefault(str(line.get("trial_id")), []).append(line["result"])
    return begun
