"""Checkpoint retention, owned by the driver: no kill instant loses a trial's resume point.

Ray Tune keeps every checkpoint (`num_to_keep=None`); Tune's own retention deletes a trial's
previous checkpoint before it saves the experiment state that names the new one, and a driver
killed in between leaves a state that names a deleted checkpoint. Here a checkpoint is deleted
only once Tune's saved state on the storage (the one `Tuner.restore` reads) is readable and no
longer needs it:

- a live trial (running, paused, errored: it may resume) keeps its best checkpoint so far, its
  latest, and the one the saved state would resume it from;
- a trial the saved state holds as ended (TERMINATED) keeps its best checkpoint (`keep = "best"`,
  the default), its best and its last (`"best+last"`), or every one (`"all"`);
- a seed of a seed group also keeps its checkpoint at its group's best epoch (`also_keep`,
  which the driver works out once every seed of the group has ended, and until then keeps all).

The saved state pruned against is first copied whole (`_saved_state.snapshot`), so a restore
from that copy finds every checkpoint it names. Works on any pyarrow file system: a local folder
or an object store.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mtl_tune.studies.spec import KEEP_CHOICES, better
from mtl_tune.studies.store._saved_state import SavedTrial, list_files, read_file

logger = logging.getLogger(__name__)


def to_delete(
    checkpoints: list[str],
    scores: dict[str, float],
    mode: str,
    saved: SavedTrial | None,
    keep: str,
    also_keep: frozenset[str] = frozenset(),
) -> tuple[list[str], bool]:
    """The checkpoints of one trial that may go now, and whether the trial is settled (ended,
    with nothing left to delete later).

    A live trial keeps its best checkpoint and every one from the one before the saved state's
    last checkpoint on: a state Tune is still uploading names one of those. An ended trial
    keeps what `keep` says.

    Args:
        checkpoints: Its checkpoint folder names on the storage, oldest first (Tune numbers
            them in order).
        scores: Checkpoint name -> the study metric of the epoch that saved it (`result.json`,
            which may lag behind the checkpoints on an object store).
        mode: "max" or "min".
        saved: The trial in Tune's saved state; None: not saved yet (nothing goes).
        keep: One of `KEEP_CHOICES`.
        also_keep: Checkpoints kept whatever `keep` says (a seed's at its group's best epoch).
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
    kept = {best, *tail, *also_keep}
    if not ended:
        # Tune records a result before it registers the result's checkpoint (a save task of
        # its own), so a saved state can name in its last result a checkpoint one newer than
        # the one it resumes from: the one before it stays too
        resume = saved.checkpoint
        floor = max((n for n in checkpoints if resume is not None and n < resume), default=None)
        kept |= {n for n in checkpoints if resume is None or floor is None or n >= floor}
        kept.add(checkpoints[-1])
    elif keep == "best+last":
        kept.add(checkpoints[-1])
    return [name for name in checkpoints if name not in kept], ended and not tail


def trial_rows(fs: Any, trial_dir: str) -> list[dict[str, Any]]:
    """The whole rows of a trial's `result.json` on the storage (none if it has none yet)."""
    try:
        text = read_file(fs, f"{trial_dir}/result.json").decode("utf-8", errors="replace")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def trial_scores(fs: Any, trial_dir: str, metric: str) -> dict[str, float]:
    """Checkpoint name -> metric, from the trial's `result.json` (its last report of each)."""
    scores = {}
    for row in trial_rows(fs, trial_dir):
        name, value = row.get("checkpoint_dir_name"), row.get(metric)
        if isinstance(name, str) and isinstance(value, int | float):
            scores[name] = float(value)
    return scores


def prune_trial(
    fs: Any, trial_dir: str, saved: SavedTrial | None, metric: str, mode: str, keep: str,
    also_keep: frozenset[str] = frozenset(), listing: list[Any] | None = None,
) -> bool:
    """Deletes the checkpoints of one trial that `to_delete` lets go; returns whether the trial
    is settled. `listing`: the trial folder's entries, listed by the caller (else listed here);
    the deleted checkpoints' entries are taken out of it."""
    import pyarrow.fs

    if listing is None:
        listing = list_files(fs, trial_dir)
    names = sorted(i.base_name for i in listing
                   if i.type == pyarrow.fs.FileType.Directory
                   and i.path.rpartition("/")[0] == trial_dir.rstrip("/")
                   and i.base_name.startswith("checkpoint_"))
    gone, settled = to_delete(names, trial_scores(fs, trial_dir, metric), mode, saved, keep,
                              also_keep)
    for name in gone:
        fs.delete_dir(f"{trial_dir}/{name}")
    if gone:
        logger.debug("%s: deleted superseded checkpoints %s", trial_dir, gone)
        folders = tuple(f"{trial_dir.rstrip('/')}/{name}" for name in gone)
        listing[:] = [i for i in listing if not i.path.startswith(folders)]
    return settled
