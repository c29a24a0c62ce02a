"""Launching and resuming a study on Ray Tune: one driver runs its experiments to the end.

The data is read and tokenized once per driver and handed to every trial through Ray's object
store (`tune.with_parameters`). A sequential search runs one Tune experiment per stage, each
stage fixing the best value of the ones before it.

A study on an object store runs from a private staging copy (`_object_store.driver_root`):
Tune writes its experiments to the store, the driver uploads each study file it writes, and the
copy is removed when the driver ends.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from mtl_tune.exceptions import MtlTuneError, SpecError
from mtl_tune.platform.bundle import DataBundle, build_bundle
from mtl_tune.platform.presets import SEED_GROUP_KEY, resolve_config
from mtl_tune.studies._commands import resume_command
from mtl_tune.studies._disk import no_space_error
from mtl_tune.studies._lean import drop_finished_optimizer_state
from mtl_tune.studies._local_ray import check_resources, connect
from mtl_tune.studies._lock import DriverLock
from mtl_tune.studies._object_store import (
    delete_remote,
    driver_root,
    has_files,
    is_staged,
    publish,
    pull,
    release_driver_root,
    uri_of,
)
from mtl_tune.studies._optuna_mirror import OptunaMirror
from mtl_tune.studies._results import experiment_results, read_result_rows
from mtl_tune.studies._saved_state import repair_saved_state
from mtl_tune.studies._selection import best_epochs
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
from mtl_tune.studies._trial_log import read_trials, repair_record, staged_path
from mtl_tune.studies._tune_setup import (
    base_config,
    param_space,
    run_config,
    trainable,
    tune_config,
)

logger = logging.getLogger(__name__)
NEW_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"


@dataclass(frozen=True)
class StudyOutcome:
    folder: Path
    experiments: tuple[str, ...]  # Tune experiment names, in order
    trials: int
    errors: int
    wall_seconds: float
    unfinished: int = 0  # trials neither finished nor errored: the run was interrupted
    error_files: tuple[str, ...] = ()  # one per errored trial


def build_data(spec: StudySpec) -> DataBundle:
    # every trainable's own pair encoding (presets may differ), plus the searched ones
    encodings = {resolve_config(t, dict(spec.fixed)).pair_encoding for t in spec.trainables}
    if "pair_encoding" in spec.space:
        encodings |= set(spec.space["pair_encoding"].values)
    for stage in spec.stages:
        if stage.key == "pair_encoding":
            encodings |= set(stage.values)
    return build_bundle(base_config(spec), tuple(sorted(encodings)))


def _ended(results: Any, folder: Path) -> list[tuple[str, dict, list[dict] | None]]:
    """(trial id, config, per-epoch results; None for an error) of each trial that ended."""
    out: list[tuple[str, dict, list[dict] | None]] = []
    for r in results:
        trial_id = (r.metrics or {}).get("trial_id", "")  # "": errored before reporting
        if r.error is not None:
            out.append((trial_id, r.config, None))
        elif r.metrics:
            rows = read_result_rows(staged_path(folder, r.path))
            out.append((trial_id, r.config, rows or [r.metrics]))
    return out


def _sync_mirror(spec: StudySpec, folder: Path, experiment: str, results: Any) -> None:
    mirror = OptunaMirror.for_spec(spec, read_meta(folder)["optuna_storage"], experiment)
    ended = _ended(results, folder)
    study = mirror.study()
    if spec.seed_groups:
        groups: dict[str, list[Any]] = {}
        for trial_id, config, rows in ended:
            groups.setdefault(str(config.get(SEED_GROUP_KEY)), []).append((trial_id, config, rows))
        added = mirror.add_groups(study, groups)
    else:
        added = mirror.add(study, [(t, c, r) for t, c, r in ended if r is not None])
    if added:
        logger.info("optuna mirror: added %d trial(s) found at the end of %s", added, experiment)


def _best_stage_value(folder: Path, experiment: str, key: str, spec: StudySpec) -> Any:
    """The value of `key` whose trials (their best epochs) score best on average."""
    results = experiment_results(folder, experiment)
    best = best_epochs(results, spec.metric, spec.mode)
    if best.empty:
        raise SpecError(f"no trial of the stage over {key!r} finished; cannot pick its best value")
    means = best.groupby(f"config/{key}")[spec.metric].mean()
    return _plain(means.idxmax() if spec.mode == "max" else means.idxmin())


def _no_restore_hint(record: logging.LogRecord) -> bool:
    """Drops Tune's "Resume experiment with: Tuner.restore(...)": the CLI gives its own command."""
    return "Tuner.restore(" not in record.getMessage()


def _run_experiment(
    spec: StudySpec,
    folder: Path,
    experiment: str,
    space: dict[str, Any],
    data: DataBundle,
    optuna_url: str,
    verbose: int,
    restore: bool,
) -> Any:
    with_data = trainable(spec, data)
    path = uri_of(folder / TUNE_DIR / experiment)  # on a store, Tune reads and writes it there
    if restore and tune.Tuner.can_restore(path):
        repair_saved_state(path)  # a state file cut by a full disk: its last whole copy
        tuner = tune.Tuner.restore(
            path, trainable=with_data, resume_unfinished=True, resume_errored=True
        )
    else:
        tuner = tune.Tuner(
            with_data,
            param_space=space,
            tune_config=tune_config(spec, folder),
            run_config=run_config(spec, folder, experiment, optuna_url, verbose),
        )
    tune_log = logging.getLogger("ray.tune.tune")
    tune_log.addFilter(_no_restore_hint)
    # Tune's newer output engine prints its configuration box and a TensorBoard hint at Ray's
    # temporary session folder whatever the verbosity: below 2 the older, silent one runs
    quiet = verbose <= 1 and os.environ.get(NEW_OUTPUT_ENV) is None
    if quiet:
        os.environ[NEW_OUTPUT_ENV] = "0"
    since = time.time()
    try:
        results = tuner.fit()
    except (OSError, EOFError) as err:  # EOFError: a pickled error cut by a full disk
        full = no_space_error(folder, since, resume_command(folder.parent, folder.name), err)
        if full is not None:
            raise full from None
        raise
    finally:
        tune_log.removeFilter(_no_restore_hint)
        if quiet:
            os.environ.pop(NEW_OUTPUT_ENV, None)
    pull(folder)  # a store: the trials' results as Tune left them there
    full = no_space_error(folder, since, resume_command(folder.parent, folder.name))
    if full is not None:
        raise full
    _sync_mirror(spec, folder, experiment, results)
    ended = {r.trial_id for r in read_trials(folder).values()
             if r.experiment == experiment and r.state == "TERMINATED"}
    drop_finished_optimizer_state(results, ended)
    return results


def _run_locked(spec: StudySpec, folder: Path, verbose: int, restore: bool) -> StudyOutcome:
    start = time.perf_counter()
    meta = read_meta(folder)
    check_resources(spec)
    data = build_data(spec)
    url = meta["optuna_storage"]
    names: list[str] = []
    tally = _Tally()
    try:
        if spec.search == "sequential":
            chosen: dict[str, Any] = dict(meta.get("stage_best", {}))
            for index, stage in enumerate(spec.stages, start=1):
                experiment = f"stage{index}"
                names.append(experiment)
                fixed = {k: v for k, v in chosen.items() if k != stage.key}
                space = param_space(spec, fixed, stage.key)
                results = _run_experiment(
                    spec, folder, experiment, space, data, url, verbose, restore
                )
                tally.add(results, folder, experiment)
                if tally.unfinished:  # interrupted: a later stage needs this one's best value
                    break
                chosen[stage.key] = _best_stage_value(folder, experiment, stage.key, spec)
                meta["stage_best"] = {k: _plain(v) for k, v in chosen.items()}
                write_meta(folder, meta)
        else:
            names.append("main")
            results = _run_experiment(
                spec, folder, "main", param_space(spec), data, url, verbose, restore
            )
            tally.add(results, folder, "main")
    except KeyboardInterrupt:  # a second Ctrl-C: Tune stopped at once
        tally.unfinished = max(tally.unfinished, 1)
    wall = time.perf_counter() - start
    meta.update(wall_seconds=meta.get("wall_seconds", 0.0) + wall, experiments=names)
    if not tally.unfinished:
        meta["finished_at"] = time.time()
    write_meta(folder, meta)
    return StudyOutcome(folder, tuple(names), tally.trials, tally.errors, wall,
                        tally.unfinished, tuple(tally.error_files))


@dataclass
class _Tally:
    """Trials, errored trials (with their error files) and unfinished trials so far."""

    trials: int = 0
    errors: int = 0
    unfinished: int = 0
    error_files: list[str] = field(default_factory=list)

    def add(self, results: Any, folder: Path, experiment: str) -> None:
        states = [r.state for r in read_trials(folder).values() if r.experiment == experiment]
        self.trials += len(results)
        for result in results:
            if result.error is not None:
                self.errors += 1
                trial_dir = staged_path(folder, result.path)
                error_file = trial_dir / "error.txt"
                self.error_files.append(uri_of(error_file if error_file.is_file() else trial_dir))
        self.unfinished += sum(s not in ("TERMINATED", "ERROR") for s in states)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


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
            f"`mtl-tune study resume {spec.name}` or launch with another --name"
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
            return _run_locked(spec, folder, verbose, restore=False)
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
        return _run_locked(spec, folder, verbose, restore=True)

