"""Study specs: a TOML file -> frozen dataclasses, validated before any trial starts.

Every error names the offending key and the file, so a typo never costs a study.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import ConfigError, SpecError
from mtl_tune.platform.config import TrainConfig, key_hint
from mtl_tune.studies.spec._conditions import Condition, check_conditions
from mtl_tune.studies.spec._pbt import PbtSpec, check_pbt
from mtl_tune.studies.spec._seed_design import check_seed_design

SEARCHES = ("optuna", "optuna-mo", "grid", "sequential", "pbt")
# Optuna suggests each trial's configuration (a population's first ones, at random: `pbt`)
OPTUNA_SEARCHES = ("optuna", "optuna-mo", "pbt")
MODES = ("max", "min")
KEEP_CHOICES = ("best", "best+last", "all")  # `keep_checkpoints`
MAX_SAMPLES = 100_000  # far past any study a Ray cluster runs; 1e9 only exhausts the driver
SCHEDULERS = ("asha", "none")
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
BUILTIN = (
    "demo", "paper-ablation", "paper-search", "search", "search-mo", "search-pbt",
    "extended-ablation",
)


@dataclass(frozen=True)
class Distribution:
    """One searched key: `loguniform`/`uniform`/`int` over [low, high], or `choice` of values;
    searched only while its conditions (`when`) hold."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple[Any, ...] = ()
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Objective:
    """One objective of a multi-objective search: a reported dev metric and its direction."""

    name: str
    mode: str = "max"


@dataclass(frozen=True)
class Scheduler:
    type: str = "asha"
    grace_period: int = 1  # epochs every trial gets before ASHA may stop it
    reduction_factor: int = 2
    max_t: int = 0  # 0 = the trials' epochs


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0  # fractional values pack several trials on one GPU


@dataclass(frozen=True)
class Stage:
    """One stage of a sequential search: a key and the values tried for it."""

    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class StudySpec:
    name: str
    trainables: tuple[str, ...]
    search: str = "grid"
    # the one scalar that picks each trial's best epoch and checkpoint and that ASHA and
    # patience prune on (`prune_on` in a multi-objective spec)
    metric: str = "overall"
    mode: str = "max"
    objectives: tuple[Objective, ...] = ()  # search "optuna-mo": the Pareto front's axes
    num_samples: int = 1  # optuna: configurations to sample; grid: repeats of the whole grid
    # each configuration repeated over seeds 0..seeds-1; Optuna searches judge a configuration
    # (prune it, tell the sampler) on the mean of its seeds: a seed group
    seeds: int = 1
    seed_design: str = "shared"  # or "crossed": every init_seed x data_seed (`_seed_design`)
    max_concurrent: int = 2
    max_failures: int = 1  # retries of a crashed trial, from its last checkpoint
    # checkpoints an ended trial keeps: its best (weights only), best and last, or all
    keep_checkpoints: str = "best"
    optuna_seed: int = 0
    storage: str = ""  # study storage root; "" = --storage / $MTL_TUNE_STORAGE / ~/.mtl-tune
    fixed: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig keys for every trial
    space: Mapping[str, Distribution] = field(default_factory=dict)
    stages: tuple[Stage, ...] = ()
    scheduler: Scheduler = Scheduler()
    resources: Resources = Resources()
    pbt: PbtSpec | None = None  # search "pbt": the population's [pbt] table
    source: str = "<spec>"

    def replace(self, **changes: Any) -> StudySpec:
        return dataclasses.replace(self, **changes)

    @property
    def seed_groups(self) -> bool:
        """Whether each sampled configuration runs as a group of seeds judged together."""
        return self.search in OPTUNA_SEARCHES and self.seeds > 1

    @property
    def runs_per_configuration(self) -> int:
        """A configuration's runs over seeds: `seeds`, or its square when crossed."""
        return self.seeds**2 if self.seed_design == "crossed" else self.seeds

    @property
    def conditional(self) -> bool:
        """Whether some searched key is searched only under a condition (`when`)."""
        return any(d.when for d in self.space.values())

    @property
    def searched_keys(self) -> tuple[str, ...]:
        keys = list(self.space)
        keys += [s.key for s in self.stages]
        if len(self.trainables) > 1:
            keys.insert(0, "trainable")
        return tuple(keys)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, but got {mode!r}")


def better(a: float, b: float, mode: str) -> bool:
    """Whether `a` beats `b` under `mode` ("max" or "min")."""
    check_mode(mode)
    return a > b if mode == "max" else a < b


def spec_path(name_or_path: str) -> Path:
    """A built-in spec's file for a bare name, else the path as given."""
    if name_or_path in BUILTIN:
        ref = resources.files("mtl_tune.studies.spec") / "specs" / f"{name_or_path}.toml"
        return Path(str(ref))
    path = Path(name_or_path)
    if not path.is_file():
        raise SpecError(
            f"spec {name_or_path!r} is neither a built-in spec {BUILTIN} nor an existing file"
        )
    return path


MAX_NAME = 100  # characters of a study name (a folder name; the file system allows 255 bytes)


def check_study_name(name: str, where: str = "") -> None:
    """Refuses a name that cannot be a study's folder, with the rule and the name.

    Raises:
        SpecError: Empty, `.`/`..`, a `/`, a control character (NUL ...) or over `MAX_NAME`.
    """
    bad = (not name or name in (".", "..") or "/" in name or len(name) > MAX_NAME
           or any(ord(c) < 32 or ord(c) == 127 for c in name))
    if bad:
        shown = name if len(name) <= 40 else f"{name[:40]}... ({len(name)} characters)"
        raise SpecError(
            f"a study name must be a plain folder name of 1 to {MAX_NAME} characters, without "
            f"'/' or control characters{where}, but got {shown!r}"
        )


def validate(spec: StudySpec) -> None:
    """Cross-field checks; each configuration the spec can produce must be a valid TrainConfig."""
    src = spec.source
    check_study_name(spec.name, f" (in {src}, or --name)")
    checks = [
        ("search", spec.search in SEARCHES, f"one of {SEARCHES}"),
        ("mode", spec.mode in MODES, "'max' or 'min'"),
        ("scheduler.type", spec.scheduler.type in SCHEDULERS, f"one of {SCHEDULERS}"),
        ("num_samples", 1 <= spec.num_samples <= MAX_SAMPLES, f"1 to {MAX_SAMPLES}"),
        ("seeds", spec.seeds >= 1, ">= 1"),
        ("max_concurrent", spec.max_concurrent >= 1, ">= 1"),
        ("max_failures", spec.max_failures >= 0, ">= 0"),
        ("keep_checkpoints", spec.keep_checkpoints in KEEP_CHOICES, f"one of {KEEP_CHOICES}"),
        ("scheduler.grace_period", spec.scheduler.grace_period >= 1, ">= 1"),
        ("scheduler.reduction_factor", spec.scheduler.reduction_factor >= 2, ">= 2"),
        ("scheduler.max_t", spec.scheduler.max_t >= 0, ">= 0 (0: the trials' epochs)"),
        ("resources.cpu", spec.resources.cpu > 0, "> 0"),
        ("resources.gpu", spec.resources.gpu >= 0, ">= 0"),
        # Ray packs fractions of one GPU; above one GPU a trial takes whole GPUs
        (
            "resources.gpu",
            spec.resources.gpu <= 1 or float(spec.resources.gpu).is_integer(),
            "at most 1 or a whole number",
        ),
    ]
    for key, ok, rule in checks:
        if not ok:
            value = spec
            for part in key.split("."):
                value = getattr(value, part)
            raise SpecError(f"`{key}` must be {rule} in {src}, but got {value!r}")
    from mtl_tune.platform.metrics import METRIC_KEYS

    if spec.metric not in METRIC_KEYS:
        raise SpecError(f"`metric` must be one of {METRIC_KEYS} in {src}, but got {spec.metric!r}")
    if spec.search == "sequential" and not spec.stages:
        raise SpecError(f"`search` 'sequential' needs [[sequential]] stages in {src}")
    if spec.search != "sequential" and spec.stages:
        raise SpecError(f"[[sequential]] stages need search = 'sequential' in {src}")
    if spec.search in ("grid", "sequential"):
        for key, dist in spec.space.items():
            if dist.kind != "choice":
                raise SpecError(
                    f"space.{key} in {src}: a {spec.search} search takes `choice` lists only, "
                    f"but got {dist.kind}"
                )
    check_seed_design(spec)
    if spec.seed_groups and spec.max_concurrent < spec.seeds:
        raise SpecError(
            f"`max_concurrent` must be at least `seeds` ({spec.seeds}) for search "
            f"{spec.search!r} in {src}: a configuration's seeds wait for each other at each "
            f"rung, so they must all be live at once; but got {spec.max_concurrent}"
        )
    _check_objectives(spec, METRIC_KEYS)
    if spec.search == "pbt":
        epochs = spec.fixed.get("epochs")
        check_pbt(spec, spec.pbt, epochs if isinstance(epochs, int) else None)
    elif spec.pbt is not None:
        raise SpecError(f"a [pbt] table needs search = 'pbt' in {src}, but search is "
                        f"{spec.search!r}")
    _check_cuda_has_gpus(spec)
    stage_keys = [s.key for s in spec.stages]
    for key in stage_keys:
        if stage_keys.count(key) > 1 or key in spec.space:
            raise SpecError(
                f"[[sequential]] key {key!r} in {src} is searched twice (in two stages, or in "
                "a stage and [space])"
            )
    _check_training_keys(spec)
    check_conditions(spec)
    if spec.search in OPTUNA_SEARCHES and not spec.searched_keys:
        raise SpecError(f"`search` {spec.search!r} needs a [space] table of the keys to search "
                        f"in {src}; for a fixed comparison use search = \"grid\"")


def _check_objectives(spec: StudySpec, metrics: tuple[str, ...]) -> None:
    src, names = spec.source, [o.name for o in spec.objectives]
    if spec.search != "optuna-mo":
        if names:
            raise SpecError(
                f"`objectives` need search = 'optuna-mo' in {src}, but search is {spec.search!r}"
            )
        return
    if len(names) < 2 or len(set(names)) != len(names):
        raise SpecError(
            f"`objectives` must name at least 2 different metrics for search 'optuna-mo' in "
            f"{src}, but got {names}"
        )
    for objective in spec.objectives:
        if objective.name not in metrics:
            raise SpecError(
                f"objective {objective.name!r} in {src} must be one of {metrics}"
            )
        if objective.mode not in MODES:
            raise SpecError(
                f"the mode of objective {objective.name!r} in {src} must be 'max' or 'min', "
                f"but got {objective.mode!r}"
            )


# the data is read and tokenized once per study, so these keys cannot vary between its trials
DATA_KEYS = ("backbone", "data_dir", "max_length", "max_examples")


def _check_cuda_has_gpus(spec: StudySpec) -> None:
    """device = "cuda" on trials Ray gives no GPU would fail in every trial, after the launch."""
    if spec.resources.gpu > 0:
        return
    fixed = spec.fixed.get("device")
    searched = spec.space.get("device")
    staged = [v for s in spec.stages if s.key == "device" for v in s.values]
    values = [fixed, *(searched.values if searched is not None else ()), *staged]
    if "cuda" in values:
        raise SpecError(
            f"device 'cuda' in {spec.source} (or a --set) needs GPUs, but the trials get none "
            "([resources] gpu = 0); pass --gpus-per-trial N (or set [resources] gpu), or "
            "device = 'auto'"
        )


def _check_training_keys(spec: StudySpec) -> None:
    stage_keys = {s.key for s in spec.stages}
    known = {f.name for f in fields(TrainConfig)}
    for key in sorted({*spec.fixed, *spec.space, *stage_keys}):
        if key not in known:
            where = "[fixed]" if key in spec.fixed else "[space]"
            where = "[[sequential]]" if key in stage_keys else where
            raise SpecError(
                f"unknown training key {key!r} in {where} of {spec.source}"
                f"{key_hint(key, known)}; valid keys: {sorted(known)}"
            )
    for key in DATA_KEYS:
        dist = spec.space.get(key)
        varies = key in stage_keys or (dist is not None and (len(set(dist.values)) != 1
                                                             or bool(dist.when)))
        if varies:
            where = f"sequential stage {key}" if key in stage_keys else f"space.{key}"
            raise SpecError(
                f"{where} in {spec.source}: the data is read and tokenized once per study, so "
                f"{key} cannot vary between trials; fix {key} in [fixed]"
            )
    # one representative value per searched key must make a valid config with every preset
    samples: dict[str, Any] = {}
    for key, dist in spec.space.items():
        samples[key] = dist.values[0] if dist.kind == "choice" else dist.low
    for stage in spec.stages:
        for value in stage.values:
            _try_config(spec, {**samples, stage.key: value}, f"sequential stage {stage.key}")
    for key, dist in spec.space.items():
        for value in dist.values if dist.kind == "choice" else (dist.low, dist.high):
            _try_config(spec, {**samples, key: value}, f"space.{key}")
    _try_config(spec, samples, "[fixed]")


def _try_config(spec: StudySpec, values: Mapping[str, Any], where: str) -> None:
    from mtl_tune.platform.presets import resolve_config

    for name in spec.trainables:
        try:
            resolve_config(name, {**spec.fixed, **values})
        except ConfigError as err:
            raise SpecError(f"{where} in {spec.source}: {err}") from None
