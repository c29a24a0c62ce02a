"""Trial results the restored experiment will report again, moved aside before it restores
(the driver calls it when it resumes a study).

Tune copies a trial's `result.json` and `progress.csv` into the study when it saves its state,
and the copy is taken after the state itself is written: a trial can report an epoch between
the two, and a driver killed then leaves a study whose files hold an epoch that Tune's saved
state has not (the trial resumes from the checkpoint before it). On the restore, Tune's loggers
download the study's files and append what the trial reports: that epoch twice (a resumed
rehearsal's trial listed epochs 1, 2, 3, 3).

`rewind_trial_logs` keeps, for each trial the saved state resumes from a checkpoint, the lines
up to that checkpoint's; the lines after it go to `rewound-result.json` (and the rows of
`progress.csv` to `rewound-progress.csv`), appended, so nothing is lost. A trial whose
checkpoint is not among its lines (written by another version, or its own history) is left as
it is, as is one that ended or has no checkpoint (Tune restarts it with files of its own).
"""

from __future__ import annotations

import logging
from typing import Any

from mtl_tune.studies.store._lost_results import ENDED, RESULTS, kept_lines
from mtl_tune.studies.store._saved_state import SavedTrial, saved_trials, write_whole

logger = logging.getLogger(__name__)

PROGRESS = "progress.csv"
REWOUND = "rewound-"  # the prefix of the files the moved lines go to


def rewind_trial_logs(experiment_uri: str) -> int:
    """Moves aside the results of the experiment at `experiment_uri` (a folder or a store URI)
    that its restored trials will report again; returns how many trials had some. A storage
    that cannot be read or written is logged and left as it is."""
    import pyarrow.fs

    try:
        fs, experiment = pyarrow.fs.FileSystem.from_uri(experiment_uri)
        saved = saved_trials(fs, experiment) or {}
    except (OSError, ValueError) as err:
        logger.warning("cannot read %s to rewind trial results: %s", experiment_uri, err)
        return 0
    rewound = 0
    for trial in saved.values():
        if trial.status in ENDED or trial.checkpoint is None or not trial.folder:
            continue
        try:
            rewound += _rewind(fs, f"{experiment}/{trial.folder}", trial)
        except OSError as err:
            logger.warning("cannot rewind the results of %s: %s", trial.folder, err)
    if rewound:
        logger.warning("%d trial(s) of %s resume from a checkpoint older than their last "
                       "results: the results after it are run again, the earlier ones were "
                       "moved to %s%s", rewound, experiment_uri, REWOUND, RESULTS)
    return rewound


def _read_lines(fs: Any, path: str) -> list[str] | None:
    try:
        with fs.open_input_stream(path) as stream:
            text = bytes(stream.read()).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    return [line for line in text.splitlines() if line.strip()]


def _move_aside(fs: Any, trial_dir: str, name: str, kept: list[str], moved: list[str],
                header: tuple[str, ...] | list[str] = ()) -> None:
    """Appends `moved` to the trial's rewound copy of `name` (that starts with `header`), then
    leaves `kept` in `name`: a kill between the two leaves the lines in both, never in
    neither."""
    aside = f"{trial_dir}/{REWOUND}{name}"
    before = _read_lines(fs, aside) or list(header)
    write_whole(fs, aside, "".join(line + "\n" for line in [*before, *moved]).encode())
    write_whole(fs, f"{trial_dir}/{name}", "".join(line + "\n" for line in kept).encode())


def _rewind(fs: Any, trial_dir: str, trial: SavedTrial) -> bool:
    lines = _read_lines(fs, f"{trial_dir}/{RESULTS}")
    if not lines:
        return False
    kept = kept_lines("\n".join(lines), trial)
    if not kept or len(kept) == len(lines):
        return False
    progress = _read_lines(fs, f"{trial_dir}/{PROGRESS}")
    if progress is not None and len(progress) == len(lines) + 1:  # a header, a row a result
        _move_aside(fs, trial_dir, PROGRESS, progress[: len(kept) + 1],
                    progress[len(kept) + 1:], header=progress[:1])
    _move_aside(fs, trial_dir, RESULTS, kept, lines[len(kept):])
    return True
