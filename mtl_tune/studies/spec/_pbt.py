"""A population-based training study's `[pbt]` table: when members are judged and what an
exploit may change, read and checked with the spec.

`search = "pbt"` trains a population of `num_samples` members (each a seed group with
`seeds > 1`) whose first configurations are drawn from `[space]`. Every `interval` epochs the
members are ranked on `metric` (a group on its seeds' mean); each member of the bottom
`quantile` continues from the checkpoint of one of the top `quantile`, with its hyperparameters
changed by `mutations`: each key is drawn anew from its distribution with
`resample_probability`, else perturbed (a number x0.8 or x1.2 within its range, a list's value
moved to a neighbour). Only keys a run can take between two optimizer steps may change: the
model's layout, the data and the schedule's length cannot. A mutated key that `[space]` does not
name is drawn for each member's first configuration from its mutation's distribution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mtl_tune.exceptions import SpecError, did_you_mean
from mtl_tune.platform.config import MUTABLE_KEYS

if TYPE_CHECKING:
    from mtl_tune.studies.spec._spec import Distribution, StudySpec


@dataclass(frozen=True)
class PbtSpec:
    interval: int = 1  # epochs between decisions
    quantile: float = 0.25  # the share of members that are exploited (and that are copied)
    resample_probability: float = 0.25  # a mutated key is drawn anew, else perturbed
    mutations: Mapping[str, Distribution] = field(default_factory=dict)


_KEYS = ("interval", "quantile", "resample_probability", "mutations")


def exploited_count(members: int, quantile: float) -> int:
    """How many of `members` ranked continue from another's checkpoint at a generation (and
    how many of the best they draw from): the bottom `quantile`, at most half of them."""
    return min(math.ceil(members * quantile), members // 2)


def parse_pbt(value: Any, source: str) -> PbtSpec | None:
    """The `[pbt]` table (None: none given); each error names the key and `source`."""
    from mtl_tune.studies.spec._spec_file import _distribution

    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpecError(f"`pbt` must be a table in {source}, but got {value!r}")
    unknown = sorted(set(value) - set(_KEYS))
    if unknown:
        raise SpecError(f"unknown key(s) {unknown} in [pbt] of {source}"
                        f"{did_you_mean(unknown[0], _KEYS)}; valid: {list(_KEYS)}")
    interval = value.get("interval", 1)
    if not isinstance(interval, int) or isinstance(interval, bool):
        raise SpecError(f"`pbt.interval` must be an integer in {source}, but got {interval!r}")
    numbers = {}
    for key in ("quantile", "resample_probability"):
        number = value.get(key, getattr(PbtSpec, key))
        if not isinstance(number, int | float) or isinstance(number, bool):
            raise SpecError(f"`pbt.{key}` must be a number in {source}, but got {number!r}")
        numbers[key] = float(number)
    mutations = value.get("mutations", {})
    if not isinstance(mutations, dict):
        raise SpecError(f"`pbt.mutations` must be a table of key = distribution or list in "
                        f"{source}, but got {mutations!r}")
    parsed = {}
    for key, dist in mutations.items():
        if isinstance(dist, list):
            dist = {"choice": dist}
        elif not isinstance(dist, dict):
            raise SpecError(f"pbt.mutations.{key} in {source} must be a distribution (as in "
                            f"[space]) or a list of values, but got {dist!r}")
        if "when" in dist:
            raise SpecError(f"pbt.mutations.{key} in {source}: a mutation takes no `when`")
        parsed[key] = _distribution(key, dist, source)
    return PbtSpec(interval, numbers["quantile"], numbers["resample_probability"], parsed)


def check_pbt(spec: StudySpec, pbt: PbtSpec | None, epochs: int | None = None) -> None:
    """Refuses a population-based study's `[pbt]` table (and the spec around it) when it
    cannot run, with the rule and the value; `epochs`: the trials' planned epochs, when known."""
    src = spec.source
    if pbt is None or not pbt.mutations:
        raise SpecError(f"search 'pbt' needs [pbt] mutations in {src}: the keys an exploit may "
                        f"change, from {list(MUTABLE_KEYS)}")
    for key in pbt.mutations:
        if key not in MUTABLE_KEYS:
            raise SpecError(
                f"pbt.mutations.{key} in {src}: an exploit may change only what a run takes "
                f"between two optimizer steps {list(MUTABLE_KEYS)}, and {key!r} cannot change "
                "mid-run (the model's layout, the data or the schedule's length depend on it); "
                f"fix it in [fixed], or search it with search = 'optuna'"
                f"{did_you_mean(key, MUTABLE_KEYS)}")
        if key in spec.fixed:
            raise SpecError(f"{key!r} is both fixed ([fixed] of {src}, or a --set) and mutated "
                            f"(pbt.mutations); keep one")
    checks = [
        ("interval", pbt.interval >= 1, ">= 1"),
        ("quantile", 0 < pbt.quantile <= 0.5, "in (0, 0.5]"),
        ("resample_probability", 0 <= pbt.resample_probability <= 1, "in [0, 1]"),
    ]
    for key, ok, rule in checks:
        if not ok:
            raise SpecError(f"`pbt.{key}` must be {rule} in {src}, but got "
                            f"{getattr(pbt, key)!r}")
    if epochs is not None and pbt.interval >= epochs:
        raise SpecError(f"`pbt.interval` must be below the trials' epochs ({epochs}) in {src}: "
                        f"no decision comes before the end, but got {pbt.interval}")
    if spec.num_samples < 2:
        raise SpecError(f"`num_samples` (the population) must be at least 2 for search 'pbt' "
                        f"in {src}, but got {spec.num_samples}")
    members = spec.num_samples * spec.seeds
    if spec.max_concurrent < members:
        raise SpecError(
            f"`max_concurrent` must be at least num_samples x seeds ({members}) for search "
            f"'pbt' in {src}: every member waits for the others at each interval, paused, and "
            f"a paused trial counts as live; but got {spec.max_concurrent} (the resources "
            "still decide how many train at once)")
    if len(spec.trainables) > 1:
        raise SpecError(f"search 'pbt' trains one model iteration: an exploit continues another "
                        f"member's checkpoint, so name one trainable in {src}, but got "
                        f"{list(spec.trainables)}")
    if spec.scheduler.type != "none":
        raise SpecError(f"search 'pbt' decides itself which members continue: set [scheduler] "
                        f"type = 'none' in {src}, but got {spec.scheduler.type!r}")
