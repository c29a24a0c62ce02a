"""The decisions of seed-aware early stopping, as state that a log of events rebuilds.

A seed group is one configuration run over `seeds` seeds. It is judged at sync points: ASHA's
rungs, and every epoch when its trials have a `patience`. At a sync point the group waits until
each of its seeds that still runs has reached it; then its mean (over the seeds that reached it,
each at its first epoch at or past the point) is judged once for the whole group:
- at a rung, ASHA's rule applied to groups: stop when the mean is below the percentile
  (1 - 1/reduction_factor) of the means the groups before it recorded at that rung (the first
  group at a rung always continues); the mean is recorded either way;
- with patience, the trainer's rule (`patience_step`) applied to the mean dev `overall`.
A group stopped at a point stops all its seeds there; no seed is stopped while a sibling
continues.

Every change is an event (a plain dict); `apply` replays one, so the scheduler rebuilds its
state from the study's log after a driver restart (Tune does not restore schedulers). Group
membership is not logged: Tune re-adds every trial it restores, with its config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

import numpy as np

from mtl_tune.platform.patience import patience_ran_out, patience_step

CONTINUE, STOP = "continue", "stop"


@dataclass
class _Group:
    members: set[str] = field(default_factory=set)
    patience: int = 0
    min_delta: float = 0.0
    planned: int = 0  # the trials' epochs: no decision at or after the last one
    last_point: int = 0  # the last sync point decided
    stopped_at: int | None = None
    reference: float = -math.inf  # patience: the mean overall to beat by min_delta
    stale: int = 0


@dataclass
class GroupLedger:
    seeds: int
    mode: str
    rungs: tuple[int, ...]  # ascending
    reduction_factor: float
    groups: dict[str, _Group] = field(default_factory=dict)
    group_of: dict[str, str] = field(default_factory=dict)
    # trial -> epoch -> (the scheduler's metric, dev overall)
    scores: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)
    recorded: dict[int, dict[str, float]] = field(default_factory=dict)  # rung -> group -> mean
    ended: set[str] = field(default_factory=set)

    # -- membership (from Tune's trials, never logged) --

    def add_member(self, trial: str, group: str) -> None:
        self.groups.setdefault(group, _Group()).members.add(trial)
        self.group_of[trial] = group

    # -- events --

    def result(
        self, trial: str, group: str, epoch: int, value: float, overall: float,
        patience: int, min_delta: float, planned: int,
    ) -> dict[str, Any]:
        return self.apply({
            "event": "result", "trial": trial, "group": group, "epoch": epoch, "value": value,
            "overall": overall, "patience": patience, "min_delta": min_delta,
            "planned": planned,
        })

    def end(self, trial: str) -> dict[str, Any]:
        return self.apply({"event": "ended", "trial": trial, "group": self.group_of.get(trial)})

    def apply(self, event: dict[str, Any]) -> dict[str, Any]:
        """Applies one event (live or replayed from the log) and returns it."""
        kind = event["event"]
        if kind == "result":
            group = self.groups.setdefault(event["group"], _Group())
            group.patience, group.min_delta = int(event["patience"]), float(event["min_delta"])
            group.planned = int(event["planned"])
            self.scores.setdefault(event["trial"], {})[int(event["epoch"])] = (
                float(event["value"]), float(event["overall"])
            )
        elif kind == "ended":
            self.ended.add(event["trial"])
        elif kind == "decision":
            group = self.groups.setdefault(event["group"], _Group())
            point = int(event["epoch"])
            group.last_point = point
            if event["rung"]:
                self.recorded.setdefault(point, {})[event["group"]] = float(event["mean"])
            if event.get("stale") is not None:
                group.reference, group.stale = float(event["reference"]), int(event["stale"])
            if event["decision"] == STOP:
                group.stopped_at = point
        return {**event, "time": event.get("time", time.time())}

    # -- questions --

    def next_point(self, name: str) -> int | None:
        """The group's next sync point, or None when nothing is left to decide."""
        group = self.groups[name]
        if group.stopped_at is not None:
            return None
        if group.patience > 0:
            point = group.last_point + 1
        else:
            point = next((r for r in self.rungs if r > group.last_point), 0)
        return point if 0 < point < group.planned else None

    def stopped(self, name: str) -> bool:
        return self.groups[name].stopped_at is not None

    def stops(self, name: str, epoch: int) -> bool:
        """Whether a seed of the group at `epoch` is done: its group was stopped at or before
        that epoch. A seed behind the point (Tune's saved state lags the log, so a resumed seed
        may repeat epochs) trains up to it, as its uninterrupted run did."""
        stopped_at = self.groups[name].stopped_at
        return stopped_at is not None and epoch >= stopped_at

    def waits(self, trial: str, epoch: int) -> bool:
        """Whether the trial, at `epoch` (Tune's, not the log's latest: the two differ after a
        resume), has reached its group's next sync point, which is undecided."""
        name = self.group_of.get(trial)
        if name is None or trial in self.ended:
            return False
        point = self.next_point(name)
        return point is not None and epoch >= point

    def _reached(self, trial: str, point: int) -> tuple[float, float] | None:
        """The trial's scores at its first epoch at or past `point`; None before it."""
        epochs = [e for e in self.scores.get(trial, {}) if e >= point]
        return self.scores[trial][min(epochs)] if epochs else None

    # -- decisions --

    def decide(self, name: str) -> list[dict[str, Any]]:
        """Decides every sync point of the group that is ready, in order; returns the events."""
        events = []
        group = self.groups[name]
        while (point := self.next_point(name)) is not None and len(group.members) >= self.seeds:
            reached = {t: self._reached(t, point) for t in sorted(group.members)}
            if any(s is None and t not in self.ended for t, s in reached.items()):
                break  # a seed that still runs has not reached the point: the others wait
            scores = {t: s for t, s in reached.items() if s is not None}
            if not scores:
                break
            events.append(self.apply(self._judge(name, point, scores)))
        return events

    def _judge(
        self, name: str, point: int, scores: dict[str, tuple[float, float]]
    ) -> dict[str, Any]:
        group = self.groups[name]
        mean = fmean(v for v, _ in scores.values())
        event: dict[str, Any] = {
            "event": "decision", "group": name, "epoch": point,
            "seeds": {t: v for t, (v, _) in scores.items()}, "mean": mean,
            "rung": point in self.rungs, "cutoff": None, "decision": CONTINUE, "why": "",
        }
        if event["rung"]:
            sign = 1.0 if self.mode == "max" else -1.0
            recorded = [sign * m for m in self.recorded.get(point, {}).values()]
            if recorded:
                cutoff = float(np.nanpercentile(recorded, (1 - 1 / self.reduction_factor) * 100))
                event["cutoff"] = sign * cutoff
                if sign * mean < cutoff:
                    event.update(decision=STOP, why="rung")
        if group.patience > 0:
            overall = fmean(o for _, o in scores.values())
            reference, stale = patience_step(group.reference, group.stale, overall, group.min_delta)
            event.update(mean_overall=overall, reference=reference, stale=stale)
            if event["decision"] == CONTINUE and patience_ran_out(stale, group.patience):
                event.update(decision=STOP, why="patience")
        return event

    @classmethod
    def replayed(
        cls, events: Iterable[dict[str, Any]], seeds: int, mode: str, rungs: tuple[int, ...],
        reduction_factor: float,
    ) -> GroupLedger:
        ledger = cls(seeds, mode, rungs, reduction_factor)
        for event in events:
            ledger.apply(event)
        return ledger
