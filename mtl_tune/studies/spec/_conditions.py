"""Conditional search spaces: a [space] key searched only while other searched keys hold given
values (`when = { sampling = "temperature" }`), and otherwise left out of the trial's
configuration, so that the trainable's default applies.

A condition holds when its key is set in the configuration and its value is one of the listed
ones: a key whose own condition fails is left out, and so is every key conditioned on it. Keys
are decided in `sampling_order`, each after the keys its conditions name; a grid expands
conditions without duplicates (`grid_points`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mtl_tune.exceptions import SpecError, did_you_mean

if TYPE_CHECKING:
    from mtl_tune.studies.spec._spec import Distribution, StudySpec

TRAINABLE = "trainable"  # a condition may name it when the spec lists several trainables


@dataclass(frozen=True)
class Condition:
    """`key` must be set to one of `values` for the conditioned key to be searched."""

    key: str
    values: tuple[Any, ...]


def parse_when(value: Any, where: str) -> tuple[Condition, ...]:
    """The conditions of one [space] entry's `when` table (every one must hold)."""
    example = 'e.g. when = { sampling = "temperature" }'
    if not isinstance(value, dict) or not value:
        raise SpecError(f"{where}: `when` must be a table of searched key = value (or a list of "
                        f"values), {example}, but got {value!r}")
    conditions = []
    for key, allowed in value.items():
        values = allowed if isinstance(allowed, list) else [allowed]
        if not values or not all(isinstance(v, str | int | float | bool) for v in values):
            raise SpecError(f"{where}: `when.{key}` must be a string, number or boolean, or a "
                            f"non-empty list of them, but got {allowed!r}")
        conditions.append(Condition(key, tuple(values)))
    return tuple(conditions)


def holds(value: Any, allowed: tuple[Any, ...]) -> bool:
    """Whether `value` is one of `allowed` (True is not 1 here, as TOML tells them apart)."""
    return any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in allowed)


def active(dist: Distribution, config: Mapping[str, Any]) -> bool:
    """Whether a key with these conditions is searched, given the keys decided so far."""
    return all(c.key in config and holds(config[c.key], c.values) for c in dist.when)


def searched_space(spec: StudySpec) -> dict[str, Distribution]:
    """[space], with `trainable` first as a choice when the spec lists several trainables."""
    from mtl_tune.studies.spec._spec import Distribution

    space: dict[str, Distribution] = {}
    if len(spec.trainables) > 1:
        space[TRAINABLE] = Distribution("choice", values=tuple(spec.trainables))
    space.update(spec.space)
    return space


def sampling_order(space: Mapping[str, Distribution]) -> list[str]:
    """The keys in their order, each moved after the keys its conditions name (acyclic, as
    `check_conditions` made sure)."""
    order: list[str] = []
    waiting = list(space)
    while waiting:
        ready = next((k for k in waiting
                      if all(c.key in order or c.key not in space for c in space[k].when)),
                     waiting[0])
        order.append(ready)
        waiting.remove(ready)
    return order


def grid_points(space: Mapping[str, Distribution]) -> list[dict[str, Any]]:
    """Every configuration of a space of `choice` keys, each once: a key whose conditions fail
    is left out rather than multiplied in."""
    order = sampling_order(space)
    points: list[dict[str, Any]] = []

    def expand(index: int, point: dict[str, Any]) -> None:
        if index == len(order):
            points.append(dict(point))
            return
        key = order[index]
        if not active(space[key], point):
            expand(index + 1, point)
            return
        for value in space[key].values:
            point[key] = value
            expand(index + 1, point)
        del point[key]

    expand(0, {})
    return points


def grid_size(space: Mapping[str, Distribution]) -> int:
    """How many configurations `grid_points` makes, without listing them when nothing is
    conditional."""
    if any(d.when for d in space.values()):
        return len(grid_points(space))
    size = 1
    for dist in space.values():
        size *= len(dist.values)
    return size


def check_conditions(spec: StudySpec) -> None:
    """Refuses a condition on a key that is not searched, on a key that is not a `choice`, with a
    value its key cannot take, or in a cycle; each with the rule and the value."""
    space = searched_space(spec)
    for key, dist in spec.space.items():
        where = f"space.{key} in {spec.source}"
        for condition in dist.when:
            name = condition.key
            if name not in space:
                fixed = (f"; {name} is fixed, and a condition on a fixed key always holds or "
                         "never does" if name in spec.fixed else "")
                raise SpecError(
                    f"{where}: `when` must name a key searched in [space] (or `trainable` when "
                    f"the spec lists several trainables), but got {name!r}"
                    f"{did_you_mean(name, space)}{fixed}"
                )
            target = space[name]
            if target.kind != "choice":
                raise SpecError(
                    f"{where}: `when.{name}` must name a `choice` key (a condition tests "
                    f"values it can take), but space.{name} is {target.kind}"
                )
            bad = [v for v in condition.values if not holds(v, target.values)]
            if bad:
                raise SpecError(
                    f"{where}: `when.{name}` must list values {name} can take "
                    f"{list(target.values)}, but got {bad[0]!r}"
                )
    cycle = _cycle(spec.space)
    if cycle:
        raise SpecError(f"the `when` conditions in [space] of {spec.source} must not form a "
                        f"cycle, but got {' -> '.join(cycle)}")


def _cycle(space: Mapping[str, Distribution]) -> list[str]:
    """A cycle of conditions (`a -> b -> a`: a is searched when b, b when a), or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(key: str, path: list[str]) -> list[str]:
        state[key] = 1
        for condition in space[key].when if key in space else ():
            if state.get(condition.key) == 1:
                return [*path[path.index(condition.key):], condition.key]
            if condition.key not in state:
                found = visit(condition.key, [*path, condition.key])
                if found:
                    return found
        state[key] = 2
        return []

    for key in space:
        if key not in state:
            found = visit(key, [key])
            if found:
                return found
    return []
