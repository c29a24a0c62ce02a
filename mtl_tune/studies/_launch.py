"""Launching and resuming a study on Ray Tune: one driver runs its experiments to the end
(`_driver_run`), under the study's lock.

A resumed study is first made whole where it is: a copied or moved study adopts its folder,
a torn trial record is rewritten.

A study on an object store runs from a private staging copy (`_object_store.driver_root`):
Tune writes its experiments to the store, the driver uploads each study file it writes, and the
copy is removed when the driver ends.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from mtl_tune.exceptions import MtlTuneError, SpecError
from mtl_tune.studies._driver_run import StudyOutcome, build_data, run_locked
from mtl_tune.studies._local_ray import check_resources, connect
from mtl_tune.studies._lock import DriverLock
from mtl_tune.studies._object_store import (
    delete_remote,
    driver_root,
    has_files,
    is_staged,
    publish,
    release_driver_root,
    uri_of,
)
from mtl_tune.studies._spec import StudySpec
from mtl_tune.studies._spec_file import parse_spec, read_toml
from mtl_tune.studies._storage import (
    EVENTS_FILE,
    SPEC_FILE,
    TUNE_DIR,
    adopt_folder,
    check_private,
    default_optuna_url,
    existing_study,
    read_meta,
    study_folder,
    write_meta,
)
from mtl_tune.studies._trial_log import repair_record
from mtl_tune.studies._tune_setup import base_config, param_space

__all__ = ["StudyOutcome", "build_data", "launch_study", "load_study_spec", "param_space",
           "resume_study"]
logger = logging.getLogger(__name__)


def launch_study(
    spec: StudySpec,
    root: Path,
    spec_text: str,
    overrides: dict[str, str] | None = None,
    address: str | None = None,
    optuna_storage: str | None = None,
    verbose: int = 1,
) -> StudyOutcome:
    """Starts a new study in `root/spec.name` and runs it to the end.

    Args:
        spec: A validated spec (name, search, resources, ...).
        root: The storage root; the study gets the folder `root/spec.name`. A staging root of
            an object store (`storage_root("s3://...")`): the study goes to the store.
        spec_text: The spec file's TOML text, kept in the study folder for `resume`.
        overrides: The `--set` overrides applied to the spec's fixed keys (kept for `resume`).
        address: A Ray cluster address; None starts Ray in this process.
        optuna_storage: An Optuna storage URL (SQLAlchemy URL or journal file); default a SQLite
            file in the study folder. Required for a study on an object store (SQLite needs a
            file system), where it must be reachable from wherever `resume` and `report` run.
        verbose: 0 silent, 1 a concise line per trial event, 2-3 Ray's own tables.

    Returns:
        The outcome; for a study on a store, its `folder` is the study's local staging copy.

    Raises:
        SpecError: The study already exists, resources no node can offer, or a study on a
            store without `optuna_storage`.
        DataError: The data cannot be read. Whenever the launch fails before Tune has started,
            the study folder is removed again.
    """
    folder = study_folder(root, spec.name)
    staged = is_staged(root)
    if staged and optuna_storage is None:
        raise SpecError(
            f"a study on an object store ({uri_of(root)}) needs --optuna-storage: the Optuna "
            "record cannot live in the store; give a database URL reachable from wherever "
            "launch, resume and report run (postgresql://user:password@host/db), or a journal "
            "file path (or sqlite:///path) when all three run on this machine"
        )
    exists = has_files(folder) if staged else folder.exists() and any(folder.iterdir())
    if exists:
        raise SpecError(
            f"study {spec.name!r} already exists in {uri_of(root)}: resume it with "
            f"`mtl-tune study resume {shlex.quote(spec.name)} --storage "
            f"{shlex.quote(uri_of(root))}` or launch with another --name"
        )
    connect(address)
    check_resources(spec)
    if not staged:
        return _launch_in(folder, spec, spec_text, overrides, address, optuna_storage, verbose)
    return _on_driver_copy(root, spec.name, lambda driver: _launch_in(
        study_folder(driver, spec.name), spec, spec_text, overrides, address, optuna_storage,
        verbose))


def _on_driver_copy(
    root: Path, name: str, run: Callable[[Path], StudyOutcome]
) -> StudyOutcome:
    """Runs a driver of a study on a store from a private staging copy (`run` gets its root),
    removes the copy after, and returns the outcome with the reader's copy, pulled, as folder."""
    driver = driver_root(root)
    try:
        outcome = run(driver)
    finally:
        events = study_folder(driver, name) / EVENTS_FILE
        if events.is_file():  # an upload that failed during the run: one more try
            try:
                publish(events)
            except MtlTuneError as err:
                logger.error("the trial record of %s could not be uploaded: %s", name, err)
        release_driver_root(driver)
    return dataclasses.replace(outcome, folder=existing_study(root, name))


def _launch_in(
    folder: Path,
    spec: StudySpec,
    spec_text: str,
    overrides: dict[str, str] | None,
    address: str | None,
    optuna_storage: str | None,
    verbose: int,
) -> StudyOutcome:
    folder.mkdir(parents=True, exist_ok=True)
    # the lock before any file: a launch that loses the race to another launch of the same
    # name stops here, and leaves that one's files alone
    with DriverLock(folder, spec.name):
        try:
            (folder / SPEC_FILE).write_text(spec_text)
            publish(folder / SPEC_FILE)
            write_meta(folder, {
                "name": spec.name,
                "search": spec.search,
                "metric": spec.metric,
                "mode": spec.mode,
                "objectives": {o.name: o.mode for o in spec.objectives},
                "trainables": list(spec.trainables),
                "overrides": dict(overrides or {}),
                "resources": {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
                "seeds": spec.seeds,
                "optuna_storage": optuna_storage or default_optuna_url(folder),
                **({} if is_staged(folder) else {"folder": str(folder.resolve())}),
                "data_dir": base_config(spec).data_dir,
                "started_at": time.time(),
                "address": address or os.environ.get("RAY_ADDRESS", ""),
            })
            return run_locked(spec, folder, verbose, restore=False)
        except Exception:
            # e.g. unreadable data: nothing ran, so leave no half-made study (its lock
            # included) to block a new launch
            if not (folder / TUNE_DIR).exists() and not has_files(folder / TUNE_DIR):
                delete_remote(folder)
                shutil.rmtree(folder)
            raise


def load_study_spec(folder: Path) -> StudySpec:
    """The spec a study was launched with (its TOML plus the recorded overrides and name)."""
    meta = read_meta(folder)
    raw = read_toml(folder / SPEC_FILE)[0]
    raw["name"] = meta["name"]
    if "resources" in meta:  # as launched, with --gpus-per-trial applied
        raw["resources"] = meta["resources"]
    if "seeds" in meta:  # as launched, with --seeds applied
        raw["seeds"] = meta["seeds"]
    return parse_spec(raw, str(folder / SPEC_FILE), meta.get("overrides", {}))


def resume_study(
    root: Path, name: str, address: str | None = None, verbose: int = 1, trust: bool = False
) -> StudyOutcome:
    """Restores a study's experiments: finished trials kept, unfinished and errored continued.

    Args:
        trust: Resume even when other users can write to the study folder (see
            `check_private`).

    Raises:
        SpecError: No such study, another live driver runs it, or its folder is writable by
            every user and `trust` is False (a study on an object store: not checked).
    """
    if is_staged(root):  # no folder permissions to check: the store's access policy applies
        return _on_driver_copy(root, name, lambda driver: _resume_in(
            existing_study(driver, name), address, verbose))
    folder = existing_study(root, name)
    if not trust:
        check_private(folder)
    return _resume_in(folder, address, verbose)


def _resume_in(folder: Path, address: str | None, verbose: int) -> StudyOutcome:
    spec = load_study_spec(folder)
    connect(address)
    with DriverLock(folder, spec.name):
        adopt_folder(folder)  # a copied or moved study writes here, never to its original
        repair_record(folder)  # a torn record: rewritten whole before Tune adds to it
        return run_locked(spec, folder, verbose, restore=True)

