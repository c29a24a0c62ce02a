"""Launching and resuming a study on Ray Tune: one driver runs its experiments to the end
(`_driver_run`), under the study's lock.

A resumed study is first made whole where it is: a copied or moved study adopts its folder,
a torn trial record is rewritten.

A study on an object store runs from a private staging copy (`store.driver_copy`):
Tune writes its experiments to the store, the driver uploads each study file it writes, and the
copy is removed when the driver ends.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path

from mtl_tune.exceptions import SpecError
from mtl_tune.studies.driver._driver_run import StudyOutcome, build_data, run_locked
from mtl_tune.studies.driver._local_ray import check_resources, connect, planned_resources
from mtl_tune.studies.driver._tune_setup import param_space
from mtl_tune.studies.spec import ResolvedStudy, StudySpec, resolve_study
from mtl_tune.studies.store import (
    EVENTS_FILE,
    META_FILE,
    SPEC_FILE,
    TUNE_DIR,
    DriverLock,
    StudyMeta,
    StudyStore,
    adopt_folder,
    check_private,
    clear_staging,
    default_optuna_url,
    driver_copy,
    existing_study,
    load_study_spec,
    read_meta,
    read_trials,
    repair_record,
    study_folder,
    write_meta,
)

__all__ = ["StudyOutcome", "build_data", "confirm_study", "launch_study", "param_space",
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
    resolved: ResolvedStudy | None = None,
    *,
    simulate: bool = False,
    epoch_seconds: float = 0.0,
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
        resolved: The spec's configurations, when the caller resolved them (`launch_spec`
            does): each is resolved once per command.
        simulate: A rehearsal: the study's plan run with trials that do not train (each epoch
            takes `epoch_seconds`), on a local Ray of as many logical CPUs and GPUs as its
            concurrent trials ask for, when no cluster is given.

    Returns:
        The outcome; for a study on a store, its `folder` is the study's local staging copy.

    Raises:
        SpecError: The study already exists, resources no node can offer, or a study on a
            store without `optuna_storage`.
        DataError: The data cannot be read. Whenever the launch fails before Tune has started,
            the study folder is removed again.
    """
    store = StudyStore.at(study_folder(root, spec.name))
    where = StudyStore.at(root).uri
    if store.on_store and optuna_storage is None:
        raise SpecError(
            f"a study on an object store ({where}) needs --optuna-storage: the Optuna "
            "record cannot live in the store; give a database URL reachable from wherever "
            "launch, resume and report run (postgresql://user:password@host/db), or a journal "
            "file path (or sqlite:///path) when all three run on this machine"
        )
    if store.has_files():
        if not store.on_store and not (store.folder / META_FILE).is_file():  # (local only)
            raise SpecError(
                f"a folder of study {spec.name!r} is in {where} without its {META_FILE} (its "
                "other files are still there): restore that file from a backup to resume it, "
                "or launch with another --name"
            )
        raise SpecError(
            f"study {spec.name!r} already exists in {where}: resume it with "
            f"`mtl-tune study resume {shlex.quote(spec.name)} --storage "
            f"{shlex.quote(where)}` or launch with another --name"
        )
    study = resolved if resolved is not None else resolve_study(spec)
    if simulate and not (math.isfinite(epoch_seconds) and epoch_seconds >= 0):
        raise SpecError(f"--epoch-seconds must be a finite number >= 0 (on the command line), "
                        f"but got {epoch_seconds}")
    connect(address, planned_resources(spec) if simulate else None)
    check_resources(spec)
    simulation = (True, float(epoch_seconds)) if simulate else (False, 0.0)
    return _on_driver_copy(root, spec.name, lambda driver: _launch_in(
        study_folder(driver, spec.name), study, spec_text, overrides, address, optuna_storage,
        verbose, simulation))


def _on_driver_copy(
    root: Path, name: str, run: Callable[[Path], StudyOutcome]
) -> StudyOutcome:
    """Runs a driver in the root `driver_copy` gives it (for a study on a store: a private
    staging copy) and returns the outcome with the reader's copy, pulled, as folder."""
    with driver_copy(root, name, EVENTS_FILE) as driver:
        outcome = run(driver)
    if driver == root:
        return outcome
    return dataclasses.replace(outcome, folder=existing_study(root, name))


def _launch_in(
    folder: Path,
    study: ResolvedStudy,
    spec_text: str,
    overrides: dict[str, str] | None,
    address: str | None,
    optuna_storage: str | None,
    verbose: int,
    simulation: tuple[bool, float],
) -> StudyOutcome:
    folder.mkdir(parents=True, exist_ok=True)
    store, spec = StudyStore.at(folder), study.spec
    # the lock before any file: a launch that loses the race to another launch of the same
    # name stops here, and leaves that one's files alone
    with DriverLock(folder, spec.name):
        try:
            store.write_text(SPEC_FILE, spec_text)
            meta = StudyMeta(
                name=spec.name, search=spec.search, metric=spec.metric, mode=spec.mode,
                objectives={o.name: o.mode for o in spec.objectives},
                trainables=spec.trainables, overrides=dict(overrides or {}),
                resources={"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
                seeds=spec.seeds, num_samples=spec.num_samples,
                simulated=simulation[0], epoch_seconds=simulation[1],
                optuna_storage=optuna_storage or default_optuna_url(folder),
                folder=None if store.on_store else str(folder.resolve()),
                data_dir=study.base.data_dir, started_at=time.time(),
                address=address or os.environ.get("RAY_ADDRESS", ""),
            )
            write_meta(folder, meta)
            return run_locked(study, meta, folder, verbose, restore=False)
        except Exception:
            # e.g. unreadable data: nothing ran, so leave no half-made study (its lock
            # included) to block a new launch
            if not (folder / TUNE_DIR).exists() and not store.has_files(TUNE_DIR):
                store.remove()
            raise


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
    if StudyStore.at(root).on_store:  # no folder permissions: the store's access policy applies
        return _on_driver_copy(root, name, lambda driver: _resume_in(
            existing_study(driver, name), address, verbose))
    folder = existing_study(root, name)
    if not trust:
        check_private(folder)
    return _resume_in(folder, address, verbose)


def _resume_in(folder: Path, address: str | None, verbose: int) -> StudyOutcome:
    meta = read_meta(folder)  # as here: a copied or moved study's Optuna URL is the copy's
    spec = load_study_spec(folder, meta)
    study = resolve_study(spec)
    # every refusal (a live driver's lock, a bad spec, no such study) before Ray starts: a
    # refused resume answers at once and starts nothing
    with DriverLock(folder, spec.name):
        connect(address, planned_resources(spec) if meta.simulated else None)
        check_resources(spec)
        adopt_folder(folder)  # a copied or moved study writes here, never to its original
        repair_record(folder)  # a torn record: rewritten whole before Tune adds to it
        # checkpoints that killed trials were writing: never taken, never needed
        for left in clear_staging(folder, [r.trial_id for r in read_trials(folder).values()]):
            logger.info("removed %s, a checkpoint a killed trial was writing", left)
        return run_locked(study, meta, folder, verbose, restore=True)


def confirm_study(
    root: Path, name: str, top: int = 1, seeds: int = 5, address: str | None = None,
    verbose: int = 1, trust: bool = False,
) -> StudyOutcome:
    """Re-trains the best `top` configurations of a finished search on `seeds` fresh seeds, as
    the study's experiment `confirm` (`ConfirmPlan`); `study resume` finishes it when it is
    interrupted.

    Raises:
        SpecError: No such study, another live driver runs it, its folder is writable by every
            user and `trust` is False, it is not finished, it is a population (its members
            changed their values as they trained), or it was confirmed already.
        MtlTuneError: `top` or `seeds` below 1, or `top` above its finished configurations.
    """
    if StudyStore.at(root).on_store:
        return _on_driver_copy(root, name, lambda driver: _confirm_in(
            existing_study(driver, name), top, seeds, address, verbose))
    folder = existing_study(root, name)
    if not trust:
        check_private(folder)
    return _confirm_in(folder, top, seeds, address, verbose)


def _confirm_in(folder: Path, top: int, seeds: int, address: str | None,
                verbose: int) -> StudyOutcome:
    from mtl_tune.studies.results import confirm_plan, open_study, study_results

    meta = read_meta(folder)
    spec = load_study_spec(folder, meta)
    with DriverLock(folder, spec.name):
        _refuse_confirm(folder, meta)
        results = study_results(open_study(folder), running=False)
        if meta.finished_at is None:  # set once every planned trial ended
            open_trials = results[~results["status"].isin(("TERMINATED", "ERROR"))]
            not_done = open_trials["trial_id"].nunique()
            raise SpecError(
                f"study {folder.name!r} has not finished its search ({not_done} trial(s) not "
                f"ended): finish it first with `mtl-tune study resume {shlex.quote(folder.name)}`"
                ", then confirm it")
        plan = confirm_plan(results, meta.metric, meta.mode, top, seeds)
        study = resolve_study(spec)
        connect(address, planned_resources(spec) if meta.simulated else None)
        check_resources(spec)
        adopt_folder(folder)
        meta = dataclasses.replace(read_meta(folder), confirm=plan.to_json(), finished_at=None)
        write_meta(folder, meta)
        return run_locked(study, meta, folder, verbose, restore=True)


def _refuse_confirm(folder: Path, meta: StudyMeta) -> None:
    name = shlex.quote(folder.name)
    if meta.search == "pbt":
        raise SpecError(
            f"study {folder.name!r} is a population: its members changed their values as they "
            "trained, so a fixed configuration on fresh seeds is not what it found; re-run a "
            f"member's schedule on fresh seeds with `mtl-tune train --replay {name}:TRIAL "
            "--seeds N`")
    if meta.confirm:
        raise SpecError(
            f"study {folder.name!r} was confirmed already (its best "
            f"{len(meta.confirm.get('selected', []))} configuration(s) on seeds "
            f"{meta.confirm.get('seeds')}): `mtl-tune study resume {name}` finishes an "
            f"interrupted confirm, `mtl-tune report search {name}` shows it")
