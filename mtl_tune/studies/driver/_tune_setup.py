"""The Ray Tune objects a study spec becomes: the param space, the trainable with its data and
resources, the searcher and scheduler, and the run config with the driver's callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from mtl_tune.platform.bundle import DataBundle
from mtl_tune.studies.driver._callbacks import ConciseProgress, FreshTrialLogs, TrialEvents
from mtl_tune.studies.driver._conditional_search import ConfigurationList, DefineByRun
from mtl_tune.studies.driver._digest_callback import ResultDigest
from mtl_tune.studies.driver._group_scheduler import SeedGroupScheduler
from mtl_tune.studies.driver._optuna_mirror import OptunaMirror
from mtl_tune.studies.driver._population_scheduler import PopulationScheduler
from mtl_tune.studies.driver._relocated_search import RelocatedGrid, RelocatedSearch
from mtl_tune.studies.driver._retention_callback import CheckpointRetention
from mtl_tune.studies.driver._searcher import BestEpochSearch
from mtl_tune.studies.driver._seed_group_search import SeedGroupSearch
from mtl_tune.studies.driver._step_losses import StepLossLogger
from mtl_tune.studies.driver._stopper import PatienceStopper
from mtl_tune.studies.spec import (
    ITERATION,
    OPTUNA_SEARCHES,
    Distribution,
    StudySpec,
    asha_rungs,
    grid_points,
    searched_space,
    seed_runs,
)
from mtl_tune.studies.store import TUNE_DIR, group_log_path, population_log_path, tune_storage
from mtl_tune.trainables._simulated import make_simulated_trainable


def _seeds(spec: StudySpec) -> list[int]:
    base = int(spec.fixed.get("seed", 0))
    return list(range(base, base + spec.seeds))


def param_space(
    spec: StudySpec, stage_values: dict[str, Any] | None = None, stage_key: str | None = None
) -> dict[str, Any]:
    """The Tune param_space: fixed keys, the trainable, seeds and the searched keys. An Optuna
    search samples the searched keys itself (`DefineByRun`), and so does a grid with conditions
    (`ConfigurationList`): their space holds only what every trial shares."""
    grid = spec.search in ("grid", "sequential")
    space: dict[str, Any] = dict(spec.fixed)
    space.update(stage_values or {})
    many = len(spec.trainables) > 1
    if not grid or _listed(spec):
        if not many:
            space["trainable"] = spec.trainables[0]
        if grid and spec.seeds == 1:
            space["seed"] = _seeds(spec)[0]
        return space
    space["trainable"] = tune.grid_search(list(spec.trainables)) if many else spec.trainables[0]
    seeds = _seeds(spec)
    space["seed"] = tune.grid_search(seeds) if len(seeds) > 1 else seeds[0]
    for key, dist in spec.space.items():
        values = list(dist.values)
        space[key] = values[0] if len(values) == 1 else tune.grid_search(values)
    if stage_key is not None:
        stage = next(s for s in spec.stages if s.key == stage_key)
        space[stage_key] = tune.grid_search(list(stage.values))
    return space


def trainable(spec: StudySpec, data: DataBundle | None, epoch_seconds: float | None = None) -> Any:
    """The trials' function with its resources: a real trial reading `data`, or with
    `epoch_seconds` a simulated one (`study launch --simulate`), which reads none."""
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    if epoch_seconds is not None:
        return tune.with_resources(make_simulated_trainable(epoch_seconds), resources)
    from mtl_tune.trainables._trainable import make_trainable  # torch comes with it

    return tune.with_resources(tune.with_parameters(make_trainable(None), data=data), resources)


def _listed(spec: StudySpec) -> bool:
    """Whether a grid hands Tune its configurations one by one (`grid_configurations`): with
    conditions, or with crossed seeds, which Tune's grid cannot tie together."""
    return spec.conditional or spec.seed_design == "crossed"


def grid_configurations(spec: StudySpec, stage_key: str | None = None) -> list[dict[str, Any]]:
    """A listed grid's configurations (`_listed`), in order: each repeat, then each trainable
    and [space] configuration (a key whose conditions fail left out), then each seed run
    (`seed_runs`); in a sequential stage, each of its key's values first."""
    space = searched_space(spec)
    if stage_key is not None:
        stage = next(s for s in spec.stages if s.key == stage_key)
        space = {stage_key: Distribution("choice", values=stage.values), **space}
    runs = seed_runs(spec)
    return [
        {**point, **(run if len(runs) > 1 else {})}
        for _ in range(spec.num_samples)
        for point in grid_points(space)
        for run in runs
    ]


def tune_config(
    spec: StudySpec, folder: Path, epochs: int, stage_key: str | None = None
) -> tune.TuneConfig:
    """Searcher and scheduler. One objective: Tune's metric/mode is the study's scalar. Several:
    the searcher takes the objectives and the scheduler the scalar it prunes on, each its own.
    Seed groups: the searcher hands out each configuration once per seed and the scheduler
    stops groups, never single seeds (`SeedGroupSearch`, `SeedGroupScheduler`). `epochs`: what
    each trial plans (the resolved configuration's); `stage_key`: the sequential stage's key."""
    several = spec.search == "optuna-mo"
    scalar: dict[str, Any] = {"metric": spec.metric, "mode": spec.mode}
    max_t = spec.scheduler.max_t or epochs
    asha = spec.scheduler.type == "asha"
    scheduler: Any = FIFOScheduler()
    if spec.search == "pbt":
        assert spec.pbt is not None  # (checked with the spec)
        scheduler = PopulationScheduler(
            population_log_path(folder), spec.metric, spec.mode, spec.pbt, tuple(_seeds(spec)),
            spec.num_samples, epochs, spec.optuna_seed)
    elif spec.seed_groups:
        rungs = asha_rungs(spec.scheduler.grace_period, spec.scheduler.reduction_factor, max_t)
        scheduler = SeedGroupScheduler(
            group_log_path(folder), spec.metric, spec.mode, spec.seeds, rungs if asha else (),
            spec.scheduler.reduction_factor, max_t if asha else epochs,
        )
    elif asha:
        scheduler = ASHAScheduler(
            time_attr=ITERATION,
            max_t=max_t,
            grace_period=spec.scheduler.grace_period,
            reduction_factor=spec.scheduler.reduction_factor,
            **(scalar if several else {}),
        )
    search_alg: Any = None
    num_samples = spec.num_samples * (spec.seeds if spec.seed_groups else 1)
    if spec.search in OPTUNA_SEARCHES:
        import optuna

        # in-memory Optuna storage: Tune checkpoints it with the experiment (see _optuna_mirror);
        # a ConcurrencyLimiter caps the trials live at once (as max_concurrent_trials would:
        # Tune ignores that for a search algorithm given whole, as ours are). TPE handles
        # several objectives too, and starts sampling after 10 trials rather than NSGA-II's 50.
        sampler: Any = optuna.samplers.TPESampler(seed=spec.optuna_seed)
        if spec.search == "pbt":  # the population's first configurations
            sampler = optuna.samplers.RandomSampler(seed=spec.optuna_seed)
        objectives = (
            {"metric": [o.name for o in spec.objectives], "mode": [o.mode for o in spec.objectives]}
            if several else {}
        )
        search_alg = BestEpochSearch(
            spec.metric, spec.mode, space=DefineByRun(searched_space(spec)), sampler=sampler,
            **(objectives or scalar),
        )
        if spec.seed_groups:
            search_alg = SeedGroupSearch(search_alg, _seeds(spec), spec.metric, spec.mode)
        search_alg = RelocatedSearch(ConcurrencyLimiter(search_alg, spec.max_concurrent))
    elif _listed(spec):
        configurations = grid_configurations(spec, stage_key)
        search_alg = RelocatedSearch(ConcurrencyLimiter(
            ConfigurationList(configurations, spec.metric, spec.mode), spec.max_concurrent))
        num_samples = len(configurations)
    else:
        search_alg = RelocatedGrid(max_concurrent=spec.max_concurrent)
    return tune.TuneConfig(
        metric=None if several else spec.metric,
        mode=None if several else spec.mode,
        search_alg=search_alg,
        scheduler=scheduler,
        num_samples=num_samples,
        # a trial's worker process starts the next trial of the same resources: no second
        # start-up (a Python process importing torch, ~2-3 s) per trial. Tune's default keeps it
        # off for registered trainables, as ours are; each trial builds its model afresh. Not in
        # a population: a member paused at each interval is still training its next epoch in
        # its process (Tune reports asynchronously), Tune gives a process 2 s to end that before
        # reusing it for another member, and a real epoch is longer: the member then errored
        reuse_actors=spec.pbt is None,
    )


def confirm_tune_config(spec: StudySpec, cases: list[dict[str, Any]]) -> tune.TuneConfig:
    """The confirm experiment's (`study confirm`): each case once, in order, to its planned
    epochs (no scheduler prunes a fresh seed; the trial's own patience still holds)."""
    return tune.TuneConfig(
        metric=spec.metric, mode=spec.mode, scheduler=FIFOScheduler(),
        search_alg=RelocatedSearch(ConcurrencyLimiter(
            ConfigurationList(cases, spec.metric, spec.mode), spec.max_concurrent)),
        num_samples=len(cases), reuse_actors=True,
    )


def run_config(
    spec: StudySpec, folder: Path, experiment: str, optuna_url: str, verbose: int,
    mirror: bool = True,
) -> tune.RunConfig:
    """`mirror`: whether the experiment's trials enter the study's Optuna record (the search's
    do; a confirm experiment's fresh seeds do not)."""
    retention = CheckpointRetention(spec.metric, spec.mode, spec.keep_checkpoints)
    callbacks: list[Any] = [TrialEvents(folder, experiment),
                            ResultDigest(folder, experiment), retention,
                            FreshTrialLogs(), StepLossLogger()]
    if mirror:  # it records a trial once the copy of Tune's saved state retention took has it
        callbacks.insert(0, OptunaMirror.for_spec(spec, optuna_url, experiment, folder,
                                                  saved_view=retention))
    if verbose <= 1:
        callbacks.append(ConciseProgress(spec.metric, spec.mode))
    tune_path, tune_fs = tune_storage(folder / TUNE_DIR)  # on a store: Tune writes there
    return tune.RunConfig(
        name=experiment,
        storage_path=tune_path,
        storage_filesystem=tune_fs,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # Tune keeps every checkpoint: CheckpointRetention deletes the superseded ones once
        # Tune's saved state no longer names them (Tune's own deletion comes before that save)
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=None, checkpoint_score_attribute=spec.metric,
            checkpoint_score_order=spec.mode,
        ),
        callbacks=callbacks,
        stop=PatienceStopper(),
        verbose=0 if verbose <= 1 else verbose,
    )


