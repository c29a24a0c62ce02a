"""A driver's run of a study's experiments on Ray Tune, under the study's lock: each experiment
built or restored and fitted, the Optuna mirror brought up to date, the trials tallied.

The data is read and tokenized once per driver and handed to every trial through Ray's object
store (`tune.with_parameters`). A sequential search runs one Tune experiment per stage, each
stage fixing the best value of the ones before it. A run that ran out of disk stops with one
error (`_disk`); a restore first puts back Tune's last whole saved state if the newest is cut
(`_saved_state`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ray import tune

from mtl_tune.exceptions import SpecError
from mtl_tune.platform.bundle import DataBundle, build_bundle
from mtl_tune.studies.driver._local_ray import ray_temp_root
from mtl_tune.studies.driver._memory_kill import memory_kill_error
from mtl_tune.studies.driver._optuna_mirror import OptunaMirror
from mtl_tune.studies.driver._optuna_trials import with_checkpoints
from mtl_tune.studies.driver._population_record import ended_schedules
from mtl_tune.studies.driver._tune_setup import (
    confirm_tune_config,
    param_space,
    run_config,
    trainable,
    tune_config,
)
from mtl_tune.studies.results import (
    CONFIRM,
    ConfirmPlan,
    best_epochs,
    experiment_results,
    read_result_rows,
    resume_command,
)
from mtl_tune.studies.spec import SEED_GROUP_KEY, ResolvedStudy, StudySpec, experiment_trials
from mtl_tune.studies.store import (
    TUNE_DIR,
    StudyMeta,
    StudyStore,
    TrialRecord,
    drop_finished_optimizer_state,
    no_space_error,
    read_trials,
    recover_trial_logs,
    repair_saved_state,
    rewind_trial_logs,
    staged_path,
    tune_storage,
    uri_of,
    write_meta,
)

logger = logging.getLogger(__name__)
NEW_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"
# Tune's saved state holds every checkpoint's result (`num_to_keep=None`), each result whole
# unless this says the score alone: a third of the state, which Tune rewrites and uploads at
# each save. The reports and retention read results from the trials' files, never from there
SCORES_ONLY_ENV = "TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE"


@dataclass(frozen=True)
class StudyOutcome:
    folder: Path
    experiments: tuple[str, ...]  # Tune experiment names, in order
    trials: int  # the trials Tune created
    errors: int
    wall_seconds: float
    # planned trials neither finished nor errored (those Tune never created included): the
    # run was interrupted
    unfinished: int = 0
    error_files: tuple[str, ...] = ()  # one per errored trial
    planned: int = 0  # the trials the spec starts (`trial_count`)
    finished: int = 0
    # each trial's (epochs trained, epochs planned) of those that ended, in the order Tune
    # created them, and how many of them each experiment (stage) holds
    trial_epochs: tuple[tuple[int, int], ...] = ()
    simulated: bool = False  # `--simulate`: no trial trained
    epoch_seconds: float = 0.0  # a simulated epoch's length
    slots: int = 1  # trials at a time (`max_concurrent`)
    gpu_per_trial: float = 0.0
    experiment_sizes: tuple[int, ...] = ()

    def summary_lines(self) -> list[str]:
        """Epochs trained and early stops; for a simulated study, what its plan stands for."""
        from mtl_tune.studies.results import run_lines

        seconds = self.epoch_seconds if self.simulated else None
        return run_lines(self.trial_epochs, self.slots, self.gpu_per_trial, seconds,
                         self.experiment_sizes)


def build_data(study: ResolvedStudy) -> DataBundle:
    """The data every trial of the study reads, encoded once for each pair encoding."""
    return build_bundle(study.base, study.pair_encodings())


def _ended(
    results: Any, folder: Path, records: list[TrialRecord]
) -> list[tuple[str, dict, list[dict] | None]]:
    """(trial id, config, per-epoch results; None for an error) of each trial that ended.

    Tune's result takes its config from the last reported metrics, which a trial restored
    from a killed driver's saved state can lack: the trial record (`records`, the
    experiment's) has the config then."""
    recorded = {r.trial_id: r.config for r in records}
    out: list[tuple[str, dict, list[dict] | None]] = []
    for r in results:
        trial_id = (r.metrics or {}).get("trial_id", "")  # "": errored before reporting
        config = r.config if r.config is not None else recorded.get(trial_id)
        if config is None:  # nothing ties it to a configuration (its error file still does)
            logger.warning("a trial without a config or a record (%s): not in the Optuna "
                           "mirror", r.path)
        elif r.error is not None:
            out.append((trial_id, config, None))
        elif r.metrics:
            trial_dir = staged_path(folder, r.path)
            rows = read_result_rows(trial_dir) or [r.metrics]
            out.append((trial_id, config, with_checkpoints(rows, trial_dir)))
    return out


def _sync_mirror(spec: StudySpec, folder: Path, experiment: str, optuna_url: str, results: Any,
                 records: list[TrialRecord]) -> None:
    mirror = OptunaMirror.for_spec(spec, optuna_url, experiment, folder)
    ended = _ended(results, folder, records)
    if spec.pbt is not None:  # a population's trials carry their lineage's schedule
        mirror.keep_schedules(ended_schedules(folder, {t: r for t, _, r in ended if r},
                                              spec.metric, mirror.schedule_keys))
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


def _best_stage_value(folder: Path, records: list[TrialRecord], resources: Any, key: str,
                      spec: StudySpec) -> Any:
    """The value of `key` whose trials (`records`, one stage's) score best on average at their
    best epochs."""
    experiment = records[0].experiment if records else ""
    results = experiment_results(folder, experiment,
                                 {(r.experiment, r.trial_id): r for r in records}, resources)
    best = best_epochs(results, spec.metric, spec.mode)
    if best.empty:
        raise SpecError(f"no trial of the stage over {key!r} finished; cannot pick its best value")
    means = best.groupby(f"config/{key}")[spec.metric].mean()
    return _plain(means.idxmax() if spec.mode == "max" else means.idxmin())


def _no_restore_hint(record: logging.LogRecord) -> bool:
    """Drops Tune's "Resume experiment with: Tuner.restore(...)": the CLI gives its own command."""
    return "Tuner.restore(" not in record.getMessage()


def _run_experiment(
    study: ResolvedStudy,
    folder: Path,
    experiment: str,
    space: dict[str, Any],
    trial: Any,
    optuna_url: str,
    verbose: int,
    restore: bool,
    stage_key: str | None = None,
    confirm: ConfirmPlan | None = None,
) -> tuple[Any, list[TrialRecord]]:
    """Runs one experiment (a sequential search's stage: of `stage_key`; `study confirm`'s
    fresh seeds: of `confirm`) to its end; returns Tune's results and the experiment's trials
    as the record has them then (read once)."""
    spec = study.spec
    uri = uri_of(folder / TUNE_DIR / experiment)  # on a store, Tune reads and writes it there
    path, fs = tune_storage(folder / TUNE_DIR / experiment)
    if restore and tune.Tuner.can_restore(path, storage_filesystem=fs):
        repair_saved_state(uri)  # a state file cut by a full disk: its last whole copy
        if (ray_temp := ray_temp_root()) is not None:  # a killed driver's unsynced logs
            recover_trial_logs(uri, ray_temp)
        rewind_trial_logs(uri)  # epochs saved after the checkpoint a trial resumes from
        tuner = tune.Tuner.restore(
            path, trainable=trial, resume_unfinished=True, resume_errored=True,
            storage_filesystem=fs,
        )
    else:
        tuner = tune.Tuner(
            trial,
            param_space=space,
            tune_config=(tune_config(spec, folder, study.base.epochs, stage_key)
                         if confirm is None else confirm_tune_config(spec, confirm.cases())),
            run_config=run_config(spec, folder, experiment, optuna_url, verbose,
                                  mirror=confirm is None),
        )
    tune_log = logging.getLogger("ray.tune.tune")
    tune_log.addFilter(_no_restore_hint)
    # Tune's newer output engine prints its configuration box and a TensorBoard hint at Ray's
    # temporary session folder whatever the verbosity: below 2 the older, silent one runs
    quiet = verbose <= 1 and os.environ.get(NEW_OUTPUT_ENV) is None
    if quiet:
        os.environ[NEW_OUTPUT_ENV] = "0"
    scores_only = os.environ.get(SCORES_ONLY_ENV) is None  # unless the user chose
    if scores_only:
        os.environ[SCORES_ONLY_ENV] = "1"
    since = time.time()
    try:
        results = tuner.fit()
    except (OSError, EOFError, RuntimeError) as err:  # EOFError: a pickle cut by a full disk
        resume = resume_command(folder.parent, folder.name)
        stop = (memory_kill_error(err, folder, resume, spec.max_concurrent)
                if isinstance(err, RuntimeError) else no_space_error(folder, since, resume, err))
        if stop is not None:
            raise stop from None
        raise
    finally:
        tune_log.removeFilter(_no_restore_hint)
        if quiet:
            os.environ.pop(NEW_OUTPUT_ENV, None)
        if scores_only:
            os.environ.pop(SCORES_ONLY_ENV, None)
    StudyStore.at(folder).pull()  # a store: the trials' results as Tune left them there
    full = no_space_error(folder, since, resume_command(folder.parent, folder.name))
    if full is not None:
        raise full
    records = [r for r in read_trials(folder).values() if r.experiment == experiment]
    if confirm is None:
        _sync_mirror(spec, folder, experiment, optuna_url, results, records)
    drop_finished_optimizer_state(results, {r.trial_id for r in records
                                            if r.state == "TERMINATED"})
    return results, records


def run_locked(
    study: ResolvedStudy, meta: StudyMeta, folder: Path, verbose: int, restore: bool
) -> StudyOutcome:
    """Runs the study's experiments to the end (the caller holds its lock, has checked its
    resources and read or written its study.json, `meta`)."""
    start, spec = time.perf_counter(), study.spec
    # a simulated study's trials read no data: nothing is read or tokenized
    trial = (trainable(spec, None, meta.epoch_seconds) if meta.simulated
             else trainable(spec, build_data(study)))
    url = meta.optuna_storage
    names: list[str] = []
    plan = experiment_trials(spec)
    tally = _Tally(max_t=spec.scheduler.max_t if spec.scheduler.type == "asha" else 0)
    try:
        if meta.confirm:  # `study confirm` of a finished search: its fresh seeds alone
            confirm = ConfirmPlan.from_json(meta.confirm)
            names = list(dict.fromkeys([*meta.experiments, CONFIRM]))
            plan = {CONFIRM: len(confirm.cases())}
            tally = _Tally()
            results, records = _run_experiment(study, folder, CONFIRM, {}, trial, url, verbose,
                                               restore, confirm=confirm)
            tally.add(results, records, folder, plan[CONFIRM])
        elif spec.search == "sequential":
            chosen: dict[str, Any] = dict(meta.stage_best)
            for (experiment, planned), stage in zip(plan.items(), spec.stages, strict=True):
                names.append(experiment)
                fixed = {k: v for k, v in chosen.items() if k != stage.key}
                space = param_space(spec, fixed, stage.key)
                results, records = _run_experiment(
                    study, folder, experiment, space, trial, url, verbose, restore, stage.key
                )
                tally.add(results, records, folder, planned)
                if tally.unfinished:  # interrupted: a later stage needs this one's best value
                    break
                chosen[stage.key] = _best_stage_value(folder, records, meta.resources,
                                                      stage.key, spec)
                meta = replace(meta, stage_best={k: _plain(v) for k, v in chosen.items()})
                write_meta(folder, meta)
        else:
            names.append("main")
            results, records = _run_experiment(
                study, folder, "main", param_space(spec), trial, url, verbose, restore
            )
            tally.add(results, records, folder, plan["main"])
    except KeyboardInterrupt:  # a second Ctrl-C, or one between Tune's experiments
        stopped = True
    else:
        stopped = False
    # judged against the plan, not against the trials Tune created: a Ctrl-C between two
    # trials leaves none of those unfinished, only the trials not created yet
    planned = sum(plan.values())
    finished = tally.trials - tally.errors - tally.started_unfinished
    unfinished = max(planned - finished - tally.errors, int(stopped))
    wall = time.perf_counter() - start
    write_meta(folder, replace(
        meta, wall_seconds=(meta.wall_seconds or 0.0) + wall, experiments=tuple(names),
        finished_at=meta.finished_at if unfinished else time.time()))
    return StudyOutcome(folder, tuple(names), tally.trials, tally.errors, wall, unfinished,
                        tuple(tally.error_files), planned, finished, tuple(tally.epochs),
                        meta.simulated, meta.epoch_seconds, spec.max_concurrent,
                        spec.resources.gpu, tuple(tally.sizes))


@dataclass
class _Tally:
    """Trials, errored trials (with their error files) and unfinished trials so far: those Tune
    created but did not end, and those of the plan it never created."""

    trials: int = 0
    errors: int = 0
    started_unfinished: int = 0
    never_created: int = 0
    error_files: list[str] = field(default_factory=list)
    # (trained, planned) of each trial that ended without error, and how many per experiment
    epochs: list[tuple[int, int]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    max_t: int = 0  # ASHA's last epoch, when below the trials' own (0: none)

    @property
    def unfinished(self) -> int:
        return self.started_unfinished + self.never_created

    def add(self, results: Any, records: list[TrialRecord], folder: Path, planned: int) -> None:
        states = [r.state for r in records]
        ended = {r.trial_id for r in records if r.state == "TERMINATED"}
        self.trials += len(results)
        before = len(self.epochs)
        for result in results:
            last = result.metrics or {}
            if result.error is None and last.get("trial_id") in ended and isinstance(
                    last.get("epoch"), int | float):
                planned = int(last.get("epochs_planned", 0))
                planned = min(planned, self.max_t) if self.max_t else planned
                self.epochs.append((int(last["epoch"]), planned))
            if result.error is not None:
                self.errors += 1
                trial_dir = staged_path(folder, result.path)
                error_file = trial_dir / "error.txt"
                self.error_files.append(uri_of(error_file if error_file.is_file() else trial_dir))
        self.started_unfinished += sum(s not in ("TERMINATED", "ERROR") for s in states)
        self.never_created += max(0, planned - len(results))
        self.sizes.append(len(self.epochs) - before)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
