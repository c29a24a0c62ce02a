"""A trial killed by Ray's memory monitor, told as an error the user can act on.

Ray reports such a kill as a bare `ray.exceptions.OutOfMemoryError`, which Ray Tune's actor
manager does not route to the trial (it routes only `RayActorError` and `RayTaskError`), so
`Tuner.fit` raises "Caught unexpected exception" and the whole study stops, whatever
`max_failures` says. Tune's state is on storage by then and `study resume` continues every
unfinished trial from its last checkpoint; this module says so instead of Ray's traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

from ray.exceptions import OutOfMemoryError

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.studies.store import SPEC_FILE

_NODE = re.compile(r"was ([\d.]+\s*GB used / [\d.]+\s*GB limit)")


def memory_kill_error(error: BaseException, folder: Path, resume: str,
                      max_concurrent: int) -> MtlTuneError | None:
    """The error to stop with if `error` (what `Tuner.fit` raised) comes from a worker that
    Ray's memory monitor killed; None otherwise."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, OutOfMemoryError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    node = _NODE.search(str(cause))
    spec = Path(folder) / SPEC_FILE
    line = _line_of(spec, "max_concurrent")
    where = f"{spec}:{line}" if line else f"{spec} (not set: the default)"
    return MtlTuneError(
        "Ray's memory monitor killed a trial (the node had "
        f"{node.group(1) if node else 'too little memory left'}; Ray kills at "
        "RAY_memory_usage_threshold, 0.95 of the node unless set), and Ray Tune stops the whole "
        f"study on such a kill; max_concurrent = {max_concurrent} trials at once ({where}). "
        "Nothing is lost: each unfinished trial continues from its last checkpoint, its memory "
        f"starting low again, with: {resume} (if it is killed again, free memory on the node or "
        "launch the study again with a lower max_concurrent)")


def _line_of(path: Path, key: str) -> int | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    pattern = re.compile(rf"\s*{re.escape(key)}\s*=")
    return next((n for n, text in enumerate(lines, 1) if pattern.match(text)), None)
