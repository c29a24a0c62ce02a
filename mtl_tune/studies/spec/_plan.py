"""What a study would run, for `study launch --dry-run`: resolved spec, space, trials, resources."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from mtl_tune.studies.spec._conditions import grid_size, searched_space
from mtl_tune.studies.spec._pbt import exploited_count
from mtl_tune.studies.spec._resolved import ResolvedStudy
from mtl_tune.studies.spec._spec import OPTUNA_SEARCHES, StudySpec


def asha_rungs(grace_period: int, reduction_factor: int, max_t: int) -> tuple[int, ...]:
    """ASHA's milestones (one bracket), ascending, without max_t itself (where trials end)."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    milestones = (grace_period * reduction_factor**k for k in range(count))
    return tuple(m for m in milestones if m < max_t)


def experiment_trials(spec: StudySpec) -> dict[str, int]:
    """Trials each Tune experiment of the spec starts, by experiment name in run order: grids
    multiply out, TPE samples `num_samples` configurations, each run once per seed."""
    if spec.search in OPTUNA_SEARCHES:
        return {"main": spec.num_samples * spec.seeds}
    # grid and sequential: every trainable x [space] configuration (a key whose conditions fail
    # is not multiplied in) x seed, repeated num_samples times
    per_grid = grid_size(searched_space(spec)) * spec.runs_per_configuration * spec.num_samples
    if spec.search == "sequential":  # one grid per stage value
        return {f"stage{i}": per_grid * len(s.values) for i, s in enumerate(spec.stages, start=1)}
    return {"main": per_grid}


def trial_count(spec: StudySpec) -> int:
    """Trials the spec starts, over all its experiments."""
    return sum(experiment_trials(spec).values())


def _rungs(study: ResolvedStudy) -> tuple[int, ...]:
    """The epochs at which ASHA judges trials (seed groups: their means); none without ASHA."""
    scheduler = study.spec.scheduler
    if scheduler.type != "asha":
        return ()
    max_t = scheduler.max_t or study.base.epochs
    return asha_rungs(scheduler.grace_period, scheduler.reduction_factor, max_t)


def describe(study: ResolvedStudy) -> dict[str, Any]:
    """A plain-data plan: the resolved spec, the search space and the resource plan."""
    spec = study.spec
    space: dict[str, Any] = {}
    for key, dist in spec.space.items():
        values = list(dist.values) if dist.kind == "choice" else [dist.low, dist.high]
        # searched only while every condition holds: key -> the values that switch it on
        when = {"when": {c.key: list(c.values) for c in dist.when}} if dist.when else {}
        space[key] = {dist.kind: values, **when} if when or dist.kind != "choice" else values
    for stage in spec.stages:
        space[stage.key] = {"sequential stage": list(stage.values)}
    if len(spec.trainables) > 1:
        space["trainable"] = list(spec.trainables)
    if spec.seeds > 1:
        base = int(spec.fixed.get("seed", 0))
        space["seed"] = list(range(base, base + spec.seeds))
        if spec.seed_design == "crossed":  # every initialisation with every data order
            space.pop("seed")
            space["init_seed"] = space["data_seed"] = list(range(base, base + spec.seeds))
    concurrent = min(spec.max_concurrent, trial_count(spec))
    # seed groups: each sampled configuration runs over every seed and is judged on their mean
    groups = {"groups": spec.num_samples, "seeds_per_group": spec.seeds} if spec.seed_groups else {}
    population = {"population": _population(study)} if spec.pbt is not None else {}
    return {
        "spec": {
            "name": spec.name, "source": spec.source, "search": spec.search,
            "metric": spec.metric, "mode": spec.mode, "trainables": list(spec.trainables),
            "objectives": {o.name: o.mode for o in spec.objectives},
            "seeds": spec.seeds, "seed_design": spec.seed_design,
            "num_samples": spec.num_samples, "fixed": dict(spec.fixed),
            "scheduler": {**asdict(spec.scheduler), "rungs": list(_rungs(study))},
        },
        "search_space": space,
        **population,
        "resources": {
            "per_trial": asdict(spec.resources),
            "max_concurrent_trials": concurrent,
            "trials": trial_count(spec),
            **groups,
            "peak_cpus": spec.resources.cpu * concurrent,
            "peak_gpus": spec.resources.gpu * concurrent,
        },
    }


def _population(study: ResolvedStudy) -> dict[str, Any]:
    """A population-based study's plan: its members, when they are judged, what may change."""
    spec, pbt = study.spec, study.spec.pbt
    assert pbt is not None
    mutations = {key: list(d.values) if d.kind == "choice" else {d.kind: [d.low, d.high]}
                 for key, d in pbt.mutations.items()}
    epochs = study.base.epochs
    return {
        "members": spec.num_samples, "seeds_per_member": spec.seeds,
        "interval": pbt.interval,
        "generations_at_epochs": list(range(pbt.interval, epochs, pbt.interval)),
        "exploited_per_generation": exploited_count(spec.num_samples, pbt.quantile),
        "quantile": pbt.quantile, "resample_probability": pbt.resample_probability,
        "mutations": mutations,
    }

