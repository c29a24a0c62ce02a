"""Reading a spec file: TOML into a validated `StudySpec`, every error naming key and file."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, NamedTuple

from mtl_tune.exceptions import SpecError, did_you_mean
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.presets import PRESETS
from mtl_tune.studies.spec._conditions import parse_when
from mtl_tune.studies.spec._pbt import parse_pbt
from mtl_tune.studies.spec._resolved import ResolvedStudy, resolve_study
from mtl_tune.studies.spec._spec import (
    DISTRIBUTIONS,
    Distribution,
    Objective,
    Resources,
    Scheduler,
    Stage,
    StudySpec,
    spec_path,
    validate,
)


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """A TOML file's table and text; SpecError with file (and line) when it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as err:  # a folder, a link loop, no permission
        raise SpecError(f"cannot read the spec {path}: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8-sig")  # a byte order mark, as some editors save, is fine
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise SpecError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
            f"{err.start}); save the spec as UTF-8"
        ) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML: {err}") from None


def load_spec(name_or_path: str, overrides: Mapping[str, str] | None = None) -> StudySpec:
    """Reads and validates a spec; `overrides` (from --set) replace fixed training keys."""
    path = spec_path(name_or_path)
    return parse_spec(read_toml(path)[0], str(path), overrides or {})


class LaunchSpec(NamedTuple):
    """What a launch runs, read, checked and resolved once per command."""

    study: ResolvedStudy  # the spec and each trainable's configuration
    text: str  # the spec file, verbatim (kept in the study folder for resume)
    overrides: dict[str, str]  # what the command line set (kept for resume)

    @property
    def spec(self) -> StudySpec:
        return self.study.spec


def launch_spec(
    name_or_path: str,
    overrides: Mapping[str, str],
    data_dir: Path | None = None,
    name: str | None = None,
    gpus_per_trial: float | None = None,
    seeds: int | None = None,
    samples: int | None = None,
    simulate: bool = False,
) -> LaunchSpec:
    """The spec a launch runs, its file read once: `--set` overrides, the data folder (given,
    else the spec's, else the default one; none for a simulated study, which reads no data),
    another name, GPUs per trial, seeds per row, configurations to sample."""
    path = spec_path(name_or_path)
    raw, text = read_toml(path)
    values = dict(overrides)
    if seeds is not None and seeds < 1:
        raise SpecError(f"--seeds must be >= 1 (on the command line), but got {seeds}")
    if samples is not None and samples < 1:
        raise SpecError(f"--samples must be >= 1 (on the command line), but got {samples}")
    if gpus_per_trial is not None and gpus_per_trial < 0:
        raise SpecError("--gpus-per-trial must be >= 0 (on the command line), but got "
                        f"{gpus_per_trial}")
    given = values.get("data_dir")
    if data_dir is not None and given is not None:
        raise SpecError(f"--data-dir {data_dir} and --set data_dir={given} both name the data "
                        "folder on the command line; give one")
    needs_data = not simulate or data_dir is not None or given is not None
    if needs_data and (data_dir is not None or given is not None
                       or "data_dir" not in _table(raw, "fixed", str(path))):
        from mtl_tune.datasets import data_folder

        chosen, given_as = (data_dir, "--data-dir") if given is None else (
            Path(given), f"--set data_dir={given}")
        values["data_dir"] = str(data_folder(chosen, given_as))
    # the command line's values go into the table, so that the spec is checked once, with them
    # (device = "cuda" needs the GPUs given)
    if gpus_per_trial is not None:
        raw["resources"] = {**_table(raw, "resources", str(path)), "gpu": gpus_per_trial}
    if name is not None:
        raw["name"] = name
    if seeds is not None:
        raw["seeds"] = seeds
    if samples is not None:
        raw["num_samples"] = samples
    return LaunchSpec(resolve_study(parse_spec(raw, str(path), values)), text, values)


_TOP_KEYS = {f.name for f in fields(StudySpec)} - {"source", "trainables", "stages"}
_TOP_KEYS |= {"trainable", "trainables", "sequential", "prune_on"}


def _refuse_fixed_and_searched(raw: Mapping[str, Any], overrides: Mapping[str, Any],
                               space: Mapping[str, Any], source: str) -> None:
    """A key both fixed (in [fixed] or by --set) and in [space] would silently lose one value.
    (A [[sequential]] stage's key may be fixed: that is its value until its stage runs.)"""
    fixed_in_spec = _table(raw, "fixed", source)
    for key in sorted(space):
        if key in overrides and key != "data_dir":
            where = f"--set {key}={overrides[key]} on the command line"
        elif key in fixed_in_spec:
            where = f"[fixed] of {source}"
        else:
            continue
        raise SpecError(f"{key!r} is both fixed ({where}) and searched ([space] of {source}); "
                        "keep one: remove it from [fixed] (or the --set), or from [space]")


def parse_spec(raw: Mapping[str, Any], source: str, overrides: Mapping[str, Any]) -> StudySpec:
    """Builds a `StudySpec` from parsed TOML; every error names the key and `source`."""
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise SpecError(f"unknown key(s) {unknown} in {source}"
                        f"{did_you_mean(unknown[0], _TOP_KEYS)}; valid keys: {sorted(_TOP_KEYS)}")
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
                f"unknown trainable {name!r} in {source} (key `trainables`)"
                f"{did_you_mean(name, PRESETS)}; valid: {list(PRESETS)}"
            )
    for key, value in overrides.items():  # blamed on the command line, not on the spec
        TrainConfig.from_mapping({key: value}, source=f"--set {key}={value} on the command line")
    fixed = {**_table(raw, "fixed", source), **overrides}
    space = {k: _distribution(k, v, source) for k, v in _table(raw, "space", source).items()}
    sequential = raw.get("sequential", [])
    if not isinstance(sequential, list):
        raise SpecError(f"`sequential` must be a list of [[sequential]] tables in {source}, "
                        f"but got {sequential!r}")
    stages = tuple(_stage(i, s, source) for i, s in enumerate(sequential, 1))
    _refuse_fixed_and_searched(raw, overrides, space, source)
    search = _typed(raw, "search", str, source, default="grid")
    pbt = parse_pbt(raw.get("pbt"), source)
    if search == "pbt" and pbt is not None:  # a member's first value of a mutated key
        space = {**{k: d for k, d in pbt.mutations.items() if k not in fixed}, **space}
    scheduler = _table(raw, "scheduler", source)
    if search == "pbt" and "scheduler" not in raw:
        scheduler = {"type": "none"}  # the population decides who continues
    spec = StudySpec(
        name=_typed(raw, "name", str, source, required=True),
        trainables=tuple(trainables),
        search=search,
        metric=_metric(raw, source),
        objectives=_objectives(raw.get("objectives", []), source),
        mode=_typed(raw, "mode", str, source, default="max"),
        num_samples=_typed(raw, "num_samples", int, source, default=1),
        seeds=_typed(raw, "seeds", int, source, default=1),
        seed_design=_typed(raw, "seed_design", str, source, default="shared"),
        max_concurrent=_typed(raw, "max_concurrent", int, source, default=2),
        max_failures=_typed(raw, "max_failures", int, source, default=1),
        keep_checkpoints=_typed(raw, "keep_checkpoints", str, source, default="best"),
        optuna_seed=_typed(raw, "optuna_seed", int, source, default=0),
        storage=_typed(raw, "storage", str, source, default=""),
        fixed=fixed,
        space=space,
        stages=stages,
        scheduler=_dataclass(Scheduler, scheduler, "scheduler", source),
        resources=_dataclass(Resources, _table(raw, "resources", source), "resources", source),
        pbt=pbt,
        source=source,
    )
    validate(spec)
    return spec


def _metric(raw: Mapping[str, Any], source: str) -> str:
    """`metric`, or its other name `prune_on` (a multi-objective spec's scalar)."""
    metric = _typed(raw, "metric", str, source)
    prune_on = _typed(raw, "prune_on", str, source)
    if metric is not None and prune_on is not None and metric != prune_on:
        raise SpecError(
            f"`prune_on` and `metric` name the same scalar in {source}; give one, but got "
            f"prune_on={prune_on!r} and metric={metric!r}"
        )
    return prune_on or metric or "overall"


def _objectives(value: Any, source: str) -> tuple[Objective, ...]:
    """`["sst_acc", ...]` (each maximised) or `{ sst_acc = "max", ... }`."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(Objective(name) for name in value)
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return tuple(Objective(name, mode) for name, mode in value.items())
    raise SpecError(
        f"`objectives` must be a list of metric names or a table of metric = \"max\"|\"min\" "
        f"in {source}, but got {value!r}"
    )


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
            f"unknown key(s) {unknown} in [{key}] of {source}"
            f"{did_you_mean(unknown[0], defaults)}; valid: {sorted(defaults)}"
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
    when = parse_when(value["when"], where) if "when" in value else ()
    entries = {k: v for k, v in value.items() if k != "when"}
    if len(entries) != 1 or next(iter(entries)) not in DISTRIBUTIONS:
        raise SpecError(
            f"{where} must be one table entry of {DISTRIBUTIONS} (and, if it is conditional, "
            f"`when`), e.g. {{ loguniform = [1e-6, 1e-4] }}, but got {value!r}"
        )
    kind, args = next(iter(entries.items()))
    if not isinstance(args, list) or not args:
        raise SpecError(f"{where}: {kind} takes a list, but got {args!r}")
    if kind == "choice":
        if not all(isinstance(a, str | int | float | bool) for a in args):
            raise SpecError(f"{where}: choice values must be strings, numbers or booleans, "
                            f"but got {args!r}")
        return Distribution("choice", values=tuple(args), when=when)
    if len(args) != 2 or not all(isinstance(a, int | float) for a in args):
        raise SpecError(f"{where}: {kind} takes [low, high], but got {args!r}")
    low, high = float(args[0]), float(args[1])
    if not low < high:
        raise SpecError(f"{where}: `low < high` must hold, but got (low={low}, high={high})")
    if kind == "loguniform" and low <= 0:
        raise SpecError(f"{where}: loguniform needs low > 0, but got low={low}")
    return Distribution(kind, low, high, when=when)


def _stage(index: int, value: Any, source: str) -> Stage:
    if not isinstance(value, dict) or set(value) != {"key", "values"} or not value["values"]:
        raise SpecError(
            f"[[sequential]] stage {index} in {source} must have exactly `key` and a non-empty "
            f"`values` list, but got {value!r}"
        )
    values = value["values"]
    if not isinstance(values, list) or not all(isinstance(v, str | int | float | bool)
                                               for v in values):
        raise SpecError(f"[[sequential]] stage {index} in {source}: `values` must be a list of "
                        f"strings, numbers or booleans, but got {values!r}")
    return Stage(str(value["key"]), tuple(values))
