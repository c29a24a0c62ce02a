"""A population-based trial's lineage: the runs whose epochs its final weights went through, and
the hyperparameters each trained them with, from the population's log and the trials' results.

A trial that continued from a donor's checkpoint after epoch P owes its epochs 1..P to the
donor's run (and, before the donor's own exploits, to the donor's donors): its schedule, the one
a replay on fresh seeds follows, is the donor's up to P and its own after. No Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtl_tune.studies.results._group_scores import EPOCH


@dataclass(frozen=True)
class Segment:
    """Epochs `first`..`last` of a lineage, trained by `trial`'s run with `config`."""

    first: int
    last: int
    trial: str
    config: Mapping[str, Any]


def exploit_edges(events: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[int, str]]]:
    """Trial -> (point, donor trial) of each exploit it took, from a population log's
    generations, oldest first."""
    edges: dict[str, list[tuple[int, str]]] = {}
    for event in events:
        if event.get("event") != "generation":
            continue
        for exploit in event["exploits"]:
            for member_trial, donor_trial, *_ in exploit["seeds"].values():
                edges.setdefault(member_trial, []).append((int(event["epoch"]), donor_trial))
    for taken in edges.values():
        taken.sort()
    return edges


def lineage(
    trial: str, last_epoch: int, edges: Mapping[str, Sequence[tuple[int, str]]],
    configs: Mapping[str, Mapping[int, Mapping[str, Any]]],
) -> list[Segment]:
    """The segments of `trial`'s lineage up to `last_epoch`, oldest first.

    Args:
        edges: `exploit_edges` of the population's log.
        configs: Trial -> epoch -> the configuration it trained that epoch with (its result
            rows' `config`).

    Raises:
        KeyError: A trial of the lineage has no configuration for an epoch it trained.
    """
    segments: list[Segment] = []
    current, last = trial, last_epoch
    while last >= 1:
        points = [(p, donor) for p, donor in edges.get(current, ()) if p < last]
        first = points[-1][0] + 1 if points else 1
        segments.append(Segment(first, last, current, dict(configs[current][last])))
        if not points:
            break
        current, last = points[-1][1], points[-1][0]
    return segments[::-1]


def schedule(segments: Sequence[Segment], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The values of `keys` along a lineage, as changes: `[{"epoch": 1, **values}, ...]`."""
    changes: list[dict[str, Any]] = []
    for segment in segments:
        values = {k: segment.config[k] for k in keys if k in segment.config}
        if not changes or {k: v for k, v in changes[-1].items() if k != "epoch"} != values:
            changes.append({"epoch": segment.first, **values})
    return changes


class _EpochConfigs(dict[str, dict[int, Mapping[str, Any]]]):
    """Trial -> epoch -> configuration, each trial's rows read when first asked for."""

    def __init__(self, rows_of: Callable[[str], Sequence[Mapping[str, Any]]]) -> None:
        super().__init__()
        self.rows_of = rows_of

    def __missing__(self, trial: str) -> dict[int, Mapping[str, Any]]:
        configs = {int(r[EPOCH]): r.get("config") or {} for r in self.rows_of(trial)
                   if isinstance(r.get(EPOCH), int | float)}
        self[trial] = configs
        return configs


def trial_lineage(
    trial: str, last_epoch: int, events: Iterable[Mapping[str, Any]],
    rows_of: Callable[[str], Sequence[Mapping[str, Any]]],
) -> list[Segment]:
    """`lineage` of the trial up to `last_epoch` from the population's log; `rows_of(trial)`: a
    trial's result rows (each with the `config` it trained with), read only for the trials of
    the lineage."""
    return lineage(trial, last_epoch, exploit_edges(events), _EpochConfigs(rows_of))


def trial_schedule(
    trial: str, last_epoch: int, events: Iterable[Mapping[str, Any]],
    rows_of: Callable[[str], Sequence[Mapping[str, Any]]], keys: Sequence[str],
) -> list[dict[str, Any]]:
    """`schedule` of the trial's lineage up to `last_epoch` (`trial_lineage`)."""
    return schedule(trial_lineage(trial, last_epoch, events, rows_of), keys)
