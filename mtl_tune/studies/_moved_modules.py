"""Where each module that an earlier mtl-tune pickled into a study lives now.

Ray Tune pickles the driver's callbacks, searchers, scheduler and stopper into a study's
`tuner.pkl`, by module path; `study resume` unpickles them. A study launched before a module
moved names its old path, so each old path resolves to its new module (the same module object,
so a class unpickled under either path is one class). Importing this module imports nothing
else: a new module is imported only when a pickle names its old path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

# old module path -> the module that holds its classes now
MOVED = {
    # studies/ in layers (spec <- store <- results <- driver)
    **{f"mtl_tune.studies.{name}": f"mtl_tune.studies.spec.{name}"
       for name in ("_plan", "_spec", "_spec_file")},
    **{f"mtl_tune.studies.{name}": f"mtl_tune.studies.store.{name}"
       for name in ("_disk", "_group_log", "_json_lines", "_lean", "_lock",
                    "_object_store", "_optuna_storage", "_relocation", "_retention",
                    "_saved_state", "_score_cache", "_storage", "_store_pull", "_trial_log")},
    **{f"mtl_tune.studies.{name}": f"mtl_tune.studies.results.{name}"
       for name in ("_commands", "_folder", "_group_scores", "_results", "_selection",
                    "_status")},
    **{f"mtl_tune.studies.{name}": f"mtl_tune.studies.driver.{name}"
       for name in ("_callbacks", "_driver_run", "_group_ledger", "_group_scheduler",
                    "_launch", "_local_ray", "_optuna_mirror", "_relocated_search",
                    "_searcher", "_seed_group_search", "_step_losses", "_stopper",
                    "_tune_setup")},
    # earlier moves: the progress callback joined the others, the presets went to platform/
    "mtl_tune.studies._progress": "mtl_tune.studies.driver._callbacks",
    "mtl_tune.trainables._presets": "mtl_tune.platform.presets",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path (a key of MOVED) as the module it moved to."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self._specs[module.__name__] = module.__spec__
        return module  # importlib keeps its name, but gives it the old path's spec ...

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._specs.pop(module.__name__)  # ... which it gets back here


def install() -> None:
    """Lets the old paths import (once per process)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
