"""A study pickled by an earlier version still loads: Ray Tune's `tuner.pkl` names the driver's
callbacks, searchers, scheduler and stopper by module path, and each old path resolves to the
module it moved to (`mtl_tune.studies._moved_modules`)."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import pickle
import subprocess
import sys

import pytest

from mtl_tune.studies._moved_modules import MOVED

# the classes Tune pickles into tuner.pkl, by the module an earlier version defined them in
PICKLED = {
    "mtl_tune.studies._callbacks": ("TrialEvents", "CheckpointRetention", "FreshTrialLogs",
                                    "ConciseProgress"),
    "mtl_tune.studies._progress": ("ConciseProgress",),
    "mtl_tune.studies._step_losses": ("StepLossLogger",),
    "mtl_tune.studies._optuna_mirror": ("OptunaMirror",),
    "mtl_tune.studies._spec": ("Objective",),
    "mtl_tune.studies._group_scheduler": ("SeedGroupScheduler",),
    "mtl_tune.studies._seed_group_search": ("SeedGroupSearch",),
    "mtl_tune.studies._searcher": ("BestEpochSearch",),
    "mtl_tune.studies._relocated_search": ("RelocatedSearch", "RelocatedGrid"),
    "mtl_tune.studies._stopper": ("PatienceStopper",),
}


def _pickle_naming(old: str, names: tuple[str, ...]) -> bytes:
    """A pickle of the classes as an earlier version wrote it: each named by its old module
    (protocol 2 names a class as plain text, so the path is replaced whole)."""
    new = importlib.import_module(MOVED[old])
    data = pickle.dumps([getattr(new, name) for name in names], protocol=2)
    for name in names:
        data = data.replace(f"c{new.__name__}\n{name}\n".encode(), f"c{old}\n{name}\n".encode())
    assert new.__name__.encode() not in data
    return data


def test_every_class_tune_pickles_loads_from_its_old_module() -> None:
    for old, names in PICKLED.items():
        new = importlib.import_module(MOVED[old])
        # each is the class itself (one class under either path), so isinstance holds
        assert pickle.loads(_pickle_naming(old, names)) == [getattr(new, n) for n in names]


@pytest.mark.parametrize("old", ["mtl_tune.studies._callbacks",
                                 "mtl_tune.studies.driver._callbacks"])
def test_checkpoint_retention_loads_from_the_module_it_left(old: str) -> None:
    # it moved out of `_callbacks` into a module of its own; the studies pickled before name it
    # by its old module
    from mtl_tune.studies.driver._retention_callback import CheckpointRetention

    retention = CheckpointRetention("overall", "max", "best")
    data = pickle.dumps(retention, protocol=2)
    assert b"c" + CheckpointRetention.__module__.encode() + b"\nCheckpointRetention\n" in data
    data = data.replace(CheckpointRetention.__module__.encode(), old.encode())
    loaded = pickle.loads(data)
    assert type(loaded) is CheckpointRetention and loaded.keep == "best"


@pytest.mark.process
def test_old_paths_of_the_ray_free_layers_load_without_ray() -> None:
    # a fresh interpreter: the spec's Objective (pickled inside the Optuna mirror) and every
    # old module of spec/, store/ and results/ load, and Ray is never imported
    objective = _pickle_naming("mtl_tune.studies._spec", ("Objective",))
    free = [old for old, new in MOVED.items()  # (trainables/ is Ray's: its package imports it)
            if old.startswith("mtl_tune.studies.") and ".driver." not in new]
    script = (
        "import pickle, sys, importlib\n"
        "import mtl_tune.studies\n"
        f"(cls,) = pickle.loads({objective!r})\n"
        "assert cls is importlib.import_module('mtl_tune.studies.spec._spec').Objective\n"
        f"for old, new in {[(o, MOVED[o]) for o in free]!r}:\n"
        "    assert importlib.import_module(old) is importlib.import_module(new), old\n"
        "    assert sys.modules[new].__spec__.name == new  # the moved module keeps its own\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "[]"


def test_every_old_path_names_a_module_that_exists() -> None:
    for old, new in MOVED.items():
        assert importlib.util.find_spec(new) is not None, (old, new)
        # and no file is back at the old path: it would be imported instead of the new module
        parent, _, name = old.rpartition(".")
        search = importlib.import_module(parent).__path__
        assert importlib.machinery.PathFinder.find_spec(old, search) is None, old
