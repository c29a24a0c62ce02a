"""The Ray Tune side of the presets: one registered function trainable per paper iteration,
plus `multitask` (the preset named by config["trainable"]).

Nothing is registered at import: Ray keeps registrations in the running cluster, so whoever
starts or joins one calls `register_all()` (`mtl_tune.studies.connect` does).
"""

from ray import tune

from mtl_tune.platform.presets import PRESETS
from mtl_tune.trainables._trainable import make_trainable, run_trial

GENERIC = "multitask"


def register_all() -> None:
    """Registers the eleven iterations and `multitask` under their stable names (idempotent)."""
    for name in PRESETS:
        tune.register_trainable(name, make_trainable(name))
    tune.register_trainable(GENERIC, make_trainable(None))


__all__ = ["GENERIC", "make_trainable", "register_all", "run_trial"]
