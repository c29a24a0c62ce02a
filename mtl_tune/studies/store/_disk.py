"""A study that ran out of disk: one error that names the folder, the space left and the space
its trials' checkpoints need, instead of Ray's tracebacks.

Ray Tune keeps going when a trial cannot write: the trial errors (its error file says ENOSPC),
Tune's state file may be cut (`_retention.restore_good_state` repairs it on resume) and a
zero-byte pickled error can even stop `Tuner.fit` while it gathers the results. The driver asks
`no_space_error` after each experiment.
"""

from __future__ import annotations

import errno
import shutil
import statistics
from pathlib import Path

from mtl_tune.exceptions import MtlTuneError

ENOSPC_MARKS = ("No space left on device", f"[Errno {errno.ENOSPC}]")


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def no_space_error(
    folder: Path, since: float, resume: str, cause: BaseException | None = None
) -> MtlTuneError | None:
    """The error to stop with if this run's trials (error files written after `since`) or
    `cause` failed for want of disk space under `folder`; None otherwise.

    Args:
        folder: The study folder.
        since: When this driver started (older error files are an earlier run's).
        resume: The command that continues the study once space is freed.
        cause: What `Tuner.fit` raised, if it raised.
    """
    said, empty = [], []  # trials whose error file names ENOSPC; those left with an empty one
    for error in Path(folder).glob("*/*/*/error.txt"):
        try:
            if error.stat().st_mtime < since:
                continue
            text = error.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if any(m in text for m in ENOSPC_MARKS):
            said.append(error.parent.name)
        elif not text.strip():
            empty.append(error.parent.name)
    sizes = [_size(c) for c in Path(folder).glob("*/*/*/checkpoint_*") if c.is_dir()]
    each = statistics.median(sizes) if sizes else 0
    free = shutil.disk_usage(folder).free
    # an empty error file or a cut pickle (EOFError) is a full disk when not one more
    # checkpoint fits
    short = free < max(each, 2**20)
    full = (isinstance(cause, OSError) and cause.errno == errno.ENOSPC) or bool(said) or (
        short and (bool(empty) or isinstance(cause, EOFError)))
    if not full:
        return None
    failed = said + empty
    from mtl_tune.studies.store._storage import human_bytes

    need = ""
    if each and failed:
        need = (f"; a checkpoint takes about {human_bytes(each)}, so its {len(failed)} failed "
                f"trial(s) need about {human_bytes(each * len(failed))} more per epoch")
    return MtlTuneError(
        f"no space left on the device holding {folder} ({human_bytes(free)} free{need}); free "
        f"some space, then continue the study with `{resume}`"
    )
