"""Checkpoint retention, owned by the driver: no kill instant loses a trial's resume point.

Ray Tune keeps every checkpoint (`num_to_keep=None`); Tune's own retention deletes a trial's
previous checkpoint before it saves the experiment state that names the new one, and a driver
killed in between leaves a state that names a deleted checkpoint. Here a checkpoint is deleted
only once Tune's saved state on the storage (the one `Tuner.restore` reads) is readable and no
longer needs it:

- a live trial (running, paused, errored: it may resume) keeps its best checkpoint so far, its
  latest, and the one the saved state would resume it from;
- a trial the saved state holds as ended (TERMINATED) keeps its best checkpoint (`keep = "best"`,
  the default), its best and its last (`"best+last"`), or every one (`"all"`).

Each saved state read whole is copied to `GOOD_STATE` beside it: should the newest state file be
cut (a full disk, a kill during its upload), `restore_good_state` puts that copy in its place
before Tune restores, and every checkpoint it names still exists. Works on any pyarrow file
system: a local folder or an object store.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass
from typing import Any

from mtl_tune.studies._selection import better
from mtl_tune.studies._spec import KEEP_CHOICES

logger = logging.getLogger(__name__)

STATE_PATTERN = "experiment_state-*.json"  # Tune's saved experiment state, one per driver run
GOOD_STATE = ".experiment_state.good.json"  # the last one read whole, copied by `read_saved`


@dataclass(frozen=True)
class SavedTrial:
    """A trial as Tune's saved state has it: its status and the checkpoint it resumes from."""

    status: str
    checkpoint: str | None


def parse_state(text: bytes | str) -> dict[str, SavedTrial]:
    """Trial id -> SavedTrial of a saved experiment state (plain JSON, read without Ray).

    Raises:
        ValueError: The text is not a whole saved state (e.g. cut by a full disk).
    """
    try:
        data = json.loads(text)
        trials = {}
        for trial_json, metadata_json in data["trial_data"]:
            trial, metadata = json.loads(trial_json), json.loads(metadata_json)
            name = (metadata.get("last_result") or {}).get("checkpoint_dir_name")
            trials[str(trial["trial_id"])] = SavedTrial(str(trial.get("status")),
                                                        str(name) if name else None)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as err:
        raise ValueError(f"not a whole saved experiment state ({err})") from None
    return trials


def _files(fs: Any, folder: str) -> list[Any]:
    import pyarrow.fs

    selector = pyarrow.fs.FileSelector(folder, allow_not_found=True)
    return list(fs.get_file_info(selector))


def _read(fs: Any, path: str) -> bytes:
    with fs.open_input_stream(path) as stream:
        return bytes(stream.read())


def _write(fs: Any, path: str, data: bytes) -> None:
    """Writes whole or not at all: a sibling moved into place (a rename on a disk)."""
    tmp = path + ".tmp"
    with fs.open_output_stream(tmp) as stream:
        stream.write(data)
    fs.move(tmp, path)


def state_stamp(fs: Any, experiment: str) -> str | None:
    """Name, size and time of Tune's newest saved state of an experiment (None: none yet)."""
    states = sorted((i for i in _files(fs, experiment)
                     if fnmatch.fnmatch(i.base_name, STATE_PATTERN)), key=lambda i: i.base_name)
    return f"{states[-1].path}|{states[-1].size}|{states[-1].mtime_ns}" if states else None


def read_saved(fs: Any, stamp: str) -> dict[str, SavedTrial] | None:
    """The trials of the saved state that `stamp` names, if it reads whole (None: being written
    or cut); a whole one is also copied to `GOOD_STATE` beside it."""
    path = stamp.split("|")[0]
    try:
        data = _read(fs, path)
        trials = parse_state(data)
    except (OSError, ValueError) as err:
        logger.debug("saved state %s not readable now: %s", path, err)
        return None
    try:
        _write(fs, f"{path.rsplit('/', 1)[0]}/{GOOD_STATE}", data)
    except OSError as err:  # a full disk: nothing is deleted on a state without its copy
        logger.warning("cannot copy Tune's saved state %s: %s", path, err)
        return None
    return trials


def repair_saved_state(experiment_uri: str) -> str | None:
    """`restore_good_state` for an experiment's folder or store URI."""
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(experiment_uri)
    return restore_good_state(fs, path)


def restore_good_state(fs: Any, experiment: str) -> str | None:
    """Before `Tuner.restore`: if Tune's newest saved state is not readable, moves it aside
    (`.torn`) and puts the last copy read whole in its place. Returns the repaired file's name,
    or None when nothing needed repair."""
    states = sorted(i.base_name for i in _files(fs, experiment)
                    if fnmatch.fnmatch(i.base_name, STATE_PATTERN))
    if not states:
        return None
    newest = f"{experiment}/{states[-1]}"
    try:
        parse_state(_read(fs, newest))
        return None
    except (OSError, ValueError) as err:
        problem = str(err)
    try:
        good = _read(fs, f"{experiment}/{GOOD_STATE}")
        parse_state(good)
    except (OSError, ValueError):
        logger.warning("Tune's saved state %s is not readable (%s) and no copy of an earlier "
                       "one exists", newest, problem)
        return None
    fs.move(newest, newest + ".torn")
    _write(fs, newest, good)
    logger.warning("Tune's saved state %s was not readable (%s): restored the last whole copy "
                   "(the cut file is kept as %s.torn)", newest, problem, states[-1])
    return states[-1]


def to_delete(
    checkpoints: list[str],
    scores: dict[str, float],
    mode: str,
    saved: SavedTrial | None,
    keep: str,
) -> tuple[list[str], bool]:
    """The checkpoints of one trial that may go now, and whether the trial is settled (ended,
    with nothing left to delete later).

    A live trial keeps its best checkpoint and every one from the saved state's resume point
    on: a state Tune is still uploading names one of those, never an older one. An ended trial
    keeps what `keep` says.

    Args:
        checkpoints: Its checkpoint folder names on the storage, oldest first (Tune numbers
            them in order).
        scores: Checkpoint name -> the study metric of the epoch that saved it (`result.json`,
            which may lag behind the checkpoints on an object store).
        mode: "max" or "min".
        saved: The trial in Tune's saved state; None: not saved yet (nothing goes).
        keep: One of `KEEP_CHOICES`.
    """
    if keep not in KEEP_CHOICES:
        raise ValueError(f"keep_checkpoints must be one of {KEEP_CHOICES}, but got {keep!r}")
    ended = saved is not None and saved.status == "TERMINATED"  # never resumed again
    if saved is None or keep == "all":
        return [], ended
    scored = [i for i, name in enumerate(checkpoints) if name in scores]
    if not scored:
        return [], False
    # checkpoints after the last scored one: their results are not read yet, any may be best;
    # an unscored one before it has no result (an orphan of a killed driver)
    tail = checkpoints[scored[-1] + 1:]
    best = None
    for name in checkpoints:  # the earliest best wins a tie, as the reports pick
        if name in scores and (best is None or better(scores[name], scores[best], mode)):
            best = name
    kept = {best, *tail}
    if not ended:
        resume = saved.checkpoint
        kept |= {n for n in checkpoints if resume is None or n >= resume}
    elif keep == "best+last":
        kept.add(checkpoints[-1])
    return [name for name in checkpoints if name not in kept], ended and not tail


def trial_scores(fs: Any, trial_dir: str, metric: str) -> dict[str, float]:
    """Checkpoint name -> metric, from the trial's `result.json` (its last report of each)."""
    try:
        text = _read(fs, f"{trial_dir}/result.json").decode("utf-8", errors="replace")
    except OSError:
        return {}
    scores = {}
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        name, value = row.get("checkpoint_dir_name"), row.get(metric)
        if isinstance(name, str) and isinstance(value, int | float):
            scores[name] = float(value)
    return scores


def prune_trial(
    fs: Any, trial_dir: str, saved: SavedTrial | None, metric: str, mode: str, keep: str
) -> bool:
    """Deletes the checkpoints of one trial that `to_delete` lets go; returns whether the trial
    is settled."""
    import pyarrow.fs

    names = sorted(i.base_name for i in _files(fs, trial_dir)
                   if i.type == pyarrow.fs.FileType.Directory
                   and i.base_name.startswith("checkpoint_"))
    gone, settled = to_delete(names, trial_scores(fs, trial_dir, metric), mode, saved, keep)
    for name in gone:
        fs.delete_dir(f"{trial_dir}/{name}")
    if gone:
        logger.debug("%s: deleted superseded checkpoints %s", trial_dir, gone)
    return settled
