"""The Ray Tune side of the presets: one registered function trainable per paper iteration,
plus `multitask` (the preset named by config["trainable"]), and the simulated trial of a
rehearsal (`_simulated.py`, which never imports torch: nor does this package until a real
trainable is asked for).

Nothing is registered at import: Ray keeps registrations in the running cluster, so whoever
starts or joins one calls `register_all()` (`mtl_tune.studies.connect` does).
"""

from __future__ import annotations

from typing import Any

from ray import tune

from mtl_tune.platform.presets import PRESETS

GENERIC = "multitask"


def register_all() -> None:
    """Registers the eleven iterations and `multitask` under their stable names (idempotent)."""
    from mtl_tune.trainables._trainable import make_trainable

    for name in PRESETS:
        tune.register_trainable(name, make_trainable(name))
    tune.register_trainable(GENERIC, make_trainable(None))


def __getattr__(name: str) -> Any:
    if name in ("make_trainable", "run_trial"):  # torch comes with them
        from mtl_tune.trainables import _trainable

        return getattr(_trainable, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["GENERIC", "make_trainable", "register_all", "run_trial"]
