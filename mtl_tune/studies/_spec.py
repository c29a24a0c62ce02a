"""Study specs: a TOML file -> frozen dataclasses, validated before any trial starts.

Every error names the offending key and the file, so a typo never costs a study.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import ConfigError, SpecError
from mtl_tune.platform.config import TrainConfig
from mtl_tune.trainables import PRESETS

SEARCHES = ("optuna", "grid", "sequential")
SCHEDULERS = ("asha", "none")
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
BUILTIN = ("demo", "paper-ablation", "paper-search", "search")


@dataclass(frozen=True)
class Distribution:
    """One searched key: `loguniform`/`uniform`/`int` over [low, high], or `choice` of values."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple[Any, ...] = ()


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
    metric: str = "overall"
    mode: str = "max"
    num_samples: int = 1  # optuna: trials to sample; grid: repeats of the whole grid
    seeds: int = 1  # each configuration repeated over seeds 0..seeds-1 (grid, sequential)
    max_concurrent: int = 2
    max_failures: int = 1  # retries of a crashed trial, from its last checkpoint
    optuna_seed: int = 0
    storage: str = ""  # study storage root; "" = --storage / $MTL_TUNE_STORAGE / ~/.mtl-tune
    fixed: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig keys for every trial
    space: Mapping[str, Distribution] = field(default_factory=dict)
    stages: tuple[Stage, ...] = ()
    scheduler: Scheduler = Scheduler()
    resources: Resources = Resources()
    source: str = "<spec>"

    def replace(self, **changes: Any) -> StudySpec:
        return dataclasses.replace(self, **changes)

    @property
    def searched_keys(self) -> tuple[str, ...]:
        keys = list(self.space)
        keys += [s.key for s in self.stages]
        if len(self.trainables) > 1:
            keys.insert(0, "trainable")
        return tuple(keys)


def spec_path(name_or_path: str) -> Path:
    """A built-in spec's file for a bare name, else the path as given."""
    if name_or_path in BUILTIN:
        ref = resources.files("mtl_tune.studies") / "specs" / f"{name_or_path}.toml"
        return Path(str(ref))
    path = Path(name_or_path)
    if not path.is_file():
        raise SpecError(
            f"spec {name_or_path!r} is neither a built-in spec {BUILTIN} nor an existing file"
        )
    return path


def load_spec(name_or_path: str, overrides: Mapping[str, str] | None = None) -> StudySpec:
    """Reads and validates a spec; `overrides` (from --set) replace fixed training keys."""
    path = spec_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML: {err}") from None
    return parse_spec(raw, str(path), overrides or {})


_TOP_KEYS = {f.name for f in fields(StudySpec)} - {"source", "trainables", "stages"}
_TOP_KEYS |= {"trainable", "trainables", "sequential"}


def parse_spec(raw: Mapping[str, Any], source: str, overrides: Mapping[str, Any]) -> StudySpec:
    """Builds a `StudySpec` from parsed TOML; every error names the key and `source`."""
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise SpecError(f"unknown key(s) {unknown} in {source}; valid keys: {sorted(_TOP_KEYS)}")
    trainables = raw.get("trainables", raw.get("trainable"))
    if isinstance(trainables, str):
        trainables = [trainables]
    names_ok = isinstance(trainables, list) and all(isinstance(t, str) for t in trainables)
    if trainables is not None and not names_ok:
        raise SpecError(
            f"`trainables` must be a trainable name or a list of names in {source}, "
            f"but got {trainables!r}"
        )
    if not trainables:
        raise SpecError(f"`trainables` must name at least one trainable in {source}")
    for name in trainables:
        if name not in PRESETS:
            raise SpecError(
                f"unknown trainable {name!r} in {source} (key `trainables`); valid: {list(PRESETS)}"
            )
    fixed = {**_table(raw, "fixed", source), **overrides}
    space = {k: _distribution(k, v, source) for k, v in _table(raw, "space", source).items()}
    stages = tuple(_stage(i, s, source) for i, s in enumerate(raw.get("sequential", []), 1))
    spec = StudySpec(
        name=_typed(raw, "name", str, source, required=True),
        trainables=tuple(trainables),
        search=_typed(raw, "search", str, source, default="grid"),
        metric=_typed(raw, "metric", str, source, default="overall"),
        mode=_typed(raw, "mode", str, source, default="max"),
        num_samples=_typed(raw, "num_samples", int, source, default=1),
        seeds=_typed(raw, "seeds", int, source, default=1),
        max_concurrent=_typed(raw, "max_concurrent", int, source, default=2),
        max_failures=_typed(raw, "max_failures", int, source, default=1),
        optuna_seed=_typed(raw, "optuna_seed", int, source, default=0),
        storage=_typed(raw, "storage", str, source, default=""),
        fixed=fixed,
        space=space,
        stages=stages,
        scheduler=_dataclass(Scheduler, _table(raw, "scheduler", source), "scheduler", source),
        resources=_dataclass(Resources, _table(raw, "resources", source), "resources", source),
        source=source,
    )
    validate(spec)
    return spec


def _table(raw: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(f"`{key}` must be a table in {source}, but got {value!r}")
    return dict(value)


def _typed(
    raw: Mapping[str, Any],
    key: str,
    kind: type,
    source: str,
    default: Any = None,
    required: bool = False,
) -> Any:
    if key not in raw:
        if required:
            raise SpecError(f"`{key}` is required in {source}")
        return default
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise SpecError(f"`{key}` must be a {kind.__name__} in {source}, but got {value!r}")
    return value


def _dataclass(cls: type, values: dict[str, Any], key: str, source: str) -> Any:
    defaults = {f.name: f.default for f in fields(cls)}
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise SpecError(
            f"unknown key(s) {unknown} in [{key}] of {source}; valid: {sorted(defaults)}"
        )
    for name, value in values.items():
        default = defaults[name]
        if isinstance(default, str):
            ok, kind = isinstance(value, str), "a string"
        elif isinstance(default, int) and not isinstance(default, bool):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        else:  # float: an integer is fine too
            ok, kind = isinstance(value, int | float) and not isinstance(value, bool), "a number"
        if not ok:
            raise SpecError(f"`{key}.{name}` must be {kind} in {source}, but got {value!r}")
    return cls(**values)


def _distribution(key: str, value: Any, source: str) -> Distribution:
    where = f"space.{key} in {source}"
    if not isinstance(value, dict):
        return Distribution("choice", values=(value,))  # a fixed value
    if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        raise SpecError(
            f"{where} must be one table entry of {DISTRIBUTIONS}, e.g. "
            f"{{ loguniform = [1e-6, 1e-4] }}, but got {value!r}"
        )
    kind, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        raise SpecError(f"{where}: {kind} takes a list, but got {args!r}")
    if kind == "choice":
        return Distribution("choice", values=tuple(args))
    if len(args) != 2 or not all(isinstance(a, int | float) for a in args):
        raise SpecError(f"{where}: {kind} takes [low, high], but got {args!r}")
    low, high = float(args[0]), float(args[1])
    if not low < high:
        raise SpecError(f"{where}: `low < high` must hold, but got (low={low}, high={high})")
    if kind == "loguniform" and low <= 0:
        raise SpecError(f"{where}: loguniform needs low > 0, but got low={low}")
    return Distribution(kind, low, high)


def _stage(index: int, value: Any, source: str) -> Stage:
    if not isinstance(value, dict) or set(value) != {"key", "values"} or not value["values"]:
        raise SpecError(
            f"[[sequential]] stage {index} in {source} must have exactly `key` and a non-empty "
            f"`values` list, but got {value!r}"
        )
    return Stage(str(value["key"]), tuple(value["values"]))


def validate(spec: StudySpec) -> None:
    """Cross-field checks; each configuration the spec can produce must be a valid TrainConfig."""
    src = spec.source
    checks = [
        ("search", spec.search in SEARCHES, f"one of {SEARCHES}"),
        ("mode", spec.mode in ("max", "min"), "'max' or 'min'"),
        ("scheduler.type", spec.scheduler.type in SCHEDULERS, f"one of {SCHEDULERS}"),
        ("num_samples", spec.num_samples >= 1, ">= 1"),
        ("seeds", spec.seeds >= 1, ">= 1"),
        ("max_concurrent", spec.max_concurrent >= 1, ">= 1"),
        ("max_failures", spec.max_failures >= 0, ">= 0"),
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
    if spec.search == "optuna" and spec.seeds != 1:
        raise SpecError(
            f"`seeds` must be 1 for search 'optuna' in {src} (TPE samples new configurations; "
            f"use a grid or sequential search to repeat over seeds), but got {spec.seeds}"
        )
    stage_keys = [s.key for s in spec.stages]
    for key in stage_keys:
        if stage_keys.count(key) > 1 or key in spec.space:
            raise SpecError(
                f"[[sequential]] key {key!r} in {src} is searched twice (in two stages, or in "
                "a stage and [space])"
            )
    _check_training_keys(spec)


# the data is read and tokenized once per study, so these keys cannot vary between its trials
DATA_KEYS = ("backbone", "data_dir", "max_length", "max_examples")


def _check_training_keys(spec: StudySpec) -> None:
    stage_keys = {s.key for s in spec.stages}
    known = {f.name for f in fields(TrainConfig)}
    for key in sorted({*spec.fixed, *spec.space, *stage_keys}):
        if key not in known:
            where = "[fixed]" if key in spec.fixed else "[space]"
            where = "[[sequential]]" if key in stage_keys else where
            raise SpecError(
                f"unknown training key {key!r} in {where} of {spec.source}; "
                f"valid keys: {sorted(known)}"
            )
    for key in DATA_KEYS:
        dist = spec.space.get(key)
        varies = key in stage_keys or (dist is not None and len(set(dist.values)) != 1)
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
    from mtl_tune.trainables import resolve_config

    for name in spec.trainables:
        try:
            resolve_config(name, {**spec.fixed, **values})
        except ConfigError as err:
            raise SpecError(f"{where} in {spec.source}: {err}") from None
