"""The decisions of population-based training, as state that a log of events rebuilds.

A population is `num_samples` members, each a configuration run over `seeds` seeds (its
trials, one per seed). At each generation point (every `interval` epochs, before the last) a
member waits until each of its seeds reached the point; once every member that still runs is
there, the generation is decided at once: members ranked on the mean of `metric` over their
seeds (at their first epoch at or past the point), and each member of the bottom `quantile`
exploits one of the top `quantile`, drawn at random: each of its seeds continues from the
donor's seed of the same rank (seed i from seed i), with the donor's configuration, mutated
(`explore`). A decision is never made on one seed.

Every change is an event (a plain dict) that `apply` replays, so that a driver restarted after
a kill rebuilds the population from the study's log (Tune does not restore schedulers), and
the random draws come from a generator seeded by the study's seed and the point: a decision
made again is the same decision.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from mtl_tune.studies.spec import Distribution
from mtl_tune.studies.spec._pbt import PbtSpec, exploited_count

PERTURB_FACTORS = (0.8, 1.2)  # a number's perturbation, as Ray Tune's PBT


def explore(config: Mapping[str, Any], pbt: PbtSpec, rng: random.Random) -> dict[str, Any]:
    """The donor's configuration with each mutated key drawn anew (`resample_probability`) or
    perturbed: a number x0.8 or x1.2, kept in its range (an `int` rounded); a list's value
    moved to a neighbour (or kept at an end)."""
    new = dict(config)
    for key, dist in sorted(pbt.mutations.items()):
        if key not in config or rng.random() < pbt.resample_probability:
            new[key] = _draw(dist, rng)
        else:
            new[key] = _perturb(config[key], dist, rng)
    return new


def _draw(dist: Distribution, rng: random.Random) -> Any:
    if dist.kind == "choice":
        return dist.values[rng.randrange(len(dist.values))]
    if dist.kind == "loguniform":
        return math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
    if dist.kind == "int":
        return rng.randint(int(dist.low), int(dist.high))
    return rng.uniform(dist.low, dist.high)


def _perturb(value: Any, dist: Distribution, rng: random.Random) -> Any:
    if dist.kind == "choice":
        values = list(dist.values)
        if value not in values:
            return _draw(dist, rng)
        index = values.index(value) + rng.choice((-1, 1))
        return values[min(max(index, 0), len(values) - 1)]
    moved = min(max(float(value) * rng.choice(PERTURB_FACTORS), dist.low), dist.high)
    return round(moved) if dist.kind == "int" else moved


@dataclass
class _Member:
    trials: dict[int, str] = field(default_factory=dict)  # seed rank -> trial
    config: dict[str, Any] = field(default_factory=dict)  # without seed and member keys
    last_point: int = 0  # the last generation decided for it


@dataclass
class PopulationLedger:
    pbt: PbtSpec
    seeds: int
    mode: str
    planned: int  # each trial's epochs: no generation at or after the last
    seed: int  # the study's seed: each generation's draws come from it and the point
    members: dict[str, _Member] = field(default_factory=dict)
    member_of: dict[str, str] = field(default_factory=dict)  # trial -> member
    scores: dict[str, dict[int, float]] = field(default_factory=dict)  # trial -> epoch -> metric
    # trial -> epoch -> the checkpoint it reported then (a donor's, copied at an exploit)
    checkpoints: dict[str, dict[int, str]] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    decided: dict[int, dict[str, Any]] = field(default_factory=dict)  # point -> its event

    # -- membership (from Tune's trials, never logged) --

    def add_trial(self, trial: str, member: str, rank: int, config: Mapping[str, Any]) -> None:
        """A seed of a member, with the member's first configuration (`config`, without seed
        and member keys); one that the log's exploits changed keeps the log's."""
        entry = self.members.setdefault(member, _Member())
        entry.trials[rank] = trial
        if not entry.config:
            entry.config = dict(config)
        self.member_of[trial] = member

    # -- events --

    def result(
        self, trial: str, epoch: int, value: float, checkpoint: str | None = None
    ) -> dict[str, Any]:
        return self.apply({"event": "result", "trial": trial, "epoch": epoch, "value": value,
                           "checkpoint": checkpoint})

    def end(self, trial: str) -> dict[str, Any]:
        return self.apply({"event": "ended", "trial": trial})

    def apply(self, event: dict[str, Any]) -> dict[str, Any]:
        """Applies one event (live or replayed from the log) and returns it."""
        kind = event["event"]
        if kind == "result":
            self.scores.setdefault(event["trial"], {})[int(event["epoch"])] = float(
                event["value"])
            if event.get("checkpoint"):
                self.checkpoints.setdefault(event["trial"], {})[int(event["epoch"])] = str(
                    event["checkpoint"])
        elif kind == "ended":
            self.ended.add(event["trial"])
        elif kind == "generation":
            point = int(event["epoch"])
            self.decided[point] = event
            for name in event["ranking"]:  # (replayed before Tune adds the trials again)
                self.members.setdefault(name, _Member()).last_point = point
            for exploit in event["exploits"]:
                self.members.setdefault(exploit["member"], _Member()).config = dict(
                    exploit["new"])
        return {**event, "time": event.get("time", time.time())}

    # -- questions --

    def next_point(self) -> int | None:
        """The next generation point, or None when no generation is left to decide."""
        last = max(self.decided, default=0)
        point = last + self.pbt.interval
        return point if point < self.planned else None

    def waits(self, trial: str, epoch: int) -> bool:
        """Whether the trial, at `epoch` (Tune's), has reached an undecided generation point."""
        if trial not in self.member_of or trial in self.ended:
            return False
        point = self.next_point()
        return point is not None and epoch >= point

    def _reached_at(self, trial: str, point: int) -> int | None:
        """The trial's first epoch at or past `point` (None: not there yet)."""
        epochs = [e for e in self.scores.get(trial, {}) if e >= point]
        return min(epochs) if epochs else None

    def _reached(self, trial: str, point: int) -> float | None:
        epoch = self._reached_at(trial, point)
        return self.scores[trial][epoch] if epoch is not None else None

    # -- decisions --

    def decide(self, population: int) -> dict[str, Any] | None:
        """The next generation's decision once all `population` members are known and each of
        their seeds that still runs reached its point; None before."""
        point = self.next_point()
        complete = [m for m in self.members.values() if len(m.trials) == self.seeds]
        if point is None or len(complete) < population:
            return None
        means: dict[str, float] = {}
        for name, member in sorted(self.members.items()):
            reached = {t: self._reached(t, point) for t in member.trials.values()}
            if any(v is None and t not in self.ended for t, v in reached.items()):
                return None  # a seed that still runs is not there yet: the others wait
            values = [v for v in reached.values() if v is not None]
            if values and not all(t in self.ended for t in member.trials.values()):
                means[name] = fmean(values)
        return self.apply(self._judge(point, means))

    def _judge(self, point: int, means: dict[str, float]) -> dict[str, Any]:
        sign = 1.0 if self.mode == "max" else -1.0
        ranking = sorted(means, key=lambda m: (-sign * means[m], m))  # best first
        count = exploited_count(len(ranking), self.pbt.quantile)
        top, bottom = ranking[:count], ranking[len(ranking) - count:] if count else []
        rng = random.Random(f"{self.seed}:{point}")
        exploits = []
        for name in bottom:
            donor = top[rng.randrange(len(top))]
            old = self.members[name].config
            new = explore(self.members[donor].config, self.pbt, rng)
            exploits.append({
                "member": name, "donor": donor, "old": old, "new": new,
                # seed rank -> [the member's trial, the donor's trial it continues, and the
                # donor's checkpoint it continues from]
                "seeds": {str(rank): [self.members[name].trials[rank], donor_trial,
                                      self.checkpoint_at(donor_trial, point)]
                          for rank in sorted(self.members[name].trials)
                          for donor_trial in [self.members[donor].trials[rank]]},
            })
        return {"event": "generation", "epoch": point, "ranking": ranking,
                "means": {m: means[m] for m in ranking}, "exploits": exploits}

    def checkpoint_at(self, trial: str, point: int) -> str | None:
        """The checkpoint the trial reported at its first epoch at or past `point`."""
        epoch = self._reached_at(trial, point)
        return self.checkpoints.get(trial, {}).get(epoch) if epoch is not None else None

    @classmethod
    def replayed(
        cls, events: Iterable[dict[str, Any]], pbt: PbtSpec, seeds: int, mode: str,
        planned: int, seed: int,
    ) -> PopulationLedger:
        ledger = cls(pbt, seeds, mode, planned, seed)
        for event in events:
            ledger.apply(event)
        return ledger
