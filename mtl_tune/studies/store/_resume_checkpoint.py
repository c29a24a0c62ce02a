"""The checkpoint a trial of Tune's saved state resumes from, read without Ray.

Tune restores a trial from the newest checkpoint its checkpoint manager registered, which its
saved state keeps pickled (`checkpoint_manager`, hex of a cloudpickle). Its last result names a
checkpoint too, but Tune records a result before it registers the result's checkpoint (a save
task of its own): a state saved between the two names in its last result a checkpoint one newer
than the one the trial resumes from, and a killed driver's trial then reports that epoch again.

The pickle is read with every class it names replaced by an inert stand-in that only keeps its
arguments and state: nothing of Ray is imported and no code of the pickle runs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import PurePosixPath
from typing import Any

PICKLED = "CLOUDPICKLE_FALLBACK"  # how Tune's JSON encoder marks a value it pickled


class _Inert:
    """What every class or function of the pickle becomes."""

    args: tuple[Any, ...] = ()
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _Inert


def _fields(value: Any) -> dict[str, Any]:
    """An inert object's attributes: its state, or that of a class with slots too."""
    state = value.state if isinstance(value, _Inert) else None
    if isinstance(state, tuple) and state and isinstance(state[0], dict):
        state = {**state[0], **(state[1] if len(state) > 1 and isinstance(state[1], dict)
                                else {})}
    if not isinstance(state, dict):
        raise ValueError(f"not a pickled object with attributes: {type(value).__name__}")
    return state


def checkpoint_manager_latest(metadata: dict[str, Any], folder: str = "") -> str | None:
    """The folder name of the checkpoint the trial whose saved metadata is `metadata` resumes
    from (`checkpoint_000003`); None when it has none. `folder`: the trial's own folder
    (relative_logdir), which the checkpoint must be in.

    Raises:
        ValueError: The metadata holds no checkpoint manager that reads as Tune's does, or its
            checkpoint is in another trial's folder (a population's member that took another
            member's checkpoint: its own result lines do not name it).
    """
    packed = metadata.get("checkpoint_manager")
    if not isinstance(packed, dict) or packed.get("_type") != PICKLED:
        raise ValueError("the trial's metadata holds no pickled checkpoint manager")
    try:
        manager = _InertUnpickler(io.BytesIO(bytes.fromhex(str(packed["value"])))).load()
        latest = _fields(manager)["_latest_checkpoint_result"]
        if latest is None:
            return None
        path = _fields(_fields(latest)["checkpoint"])["path"]
    except Exception as err:  # a pickle cut or of another version fails in any way
        raise ValueError(f"the trial's checkpoint manager does not read: {err!r}") from None
    if not isinstance(path, str) or not path.strip("/"):
        raise ValueError(f"the trial's latest checkpoint has no path: {path!r}")
    parent, name = PurePosixPath(path.rstrip("/")).parent.name, PurePosixPath(path).name
    if folder and parent != PurePosixPath(folder.rstrip("/")).name:
        raise ValueError(f"the trial's latest checkpoint {path} is not in its folder {folder}")
    return name
