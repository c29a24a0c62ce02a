"""Registered Ray Tune trainables, one per paper iteration, plus `multitask` (preset by config).

Importing this package registers every name with `ray.tune.register_trainable`. Ray keeps
registrations in the running cluster, so after `ray.shutdown()` and a new `ray.init()` in the
same process call `register_all()` again (`launch_study` does).
"""

from ray import tune

from mtl_tune.trainables._presets import PRESETS, Preset, get_preset
from mtl_tune.trainables._trainable import make_trainable, resolve_config, run_trial

GENERIC = "multitask"


def register_all() -> None:
    """Registers the seven iterations and `multitask` under their stable names (idempotent)."""
    for name in PRESETS:
        tune.register_trainable(name, make_trainable(name))
    tune.register_trainable(GENERIC, make_trainable(None))


register_all()

__all__ = [
    "GENERIC",
    "PRESETS",
    "Preset",
    "get_preset",
    "make_trainable",
    "register_all",
    "resolve_config",
    "run_trial",
]
