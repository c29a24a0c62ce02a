"""A Ray Tune scheduler that stops seed groups, never single seeds (seed-aware early stopping).

The trials of one configuration over seeds share a `seed_group` id (`SeedGroupSearch` makes
them). The decisions are `GroupLedger`'s: ASHA's rungs and patience, judged on a group's mean
once each of its running seeds reached the point. A seed that gets there first is PAUSED (Tune
keeps its checkpoint and frees its resources) until its siblings do; a group that continues
has its paused seeds run again, one that stops has them stopped. Paused seeds of a group that
continues go first, then the seeds that complete a waiting group, then new trials.

Tune does not restore a scheduler's state on `Tuner.restore`, so every result judged on and
every decision is appended to the study's `seed-groups.jsonl` before Tune acts on it, and a
resumed driver replays that log: a seed that was waiting at a kill waits again, and a rung's
record of group means is the one the earlier driver built.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from mtl_tune.studies.driver._group_ledger import GroupLedger
from mtl_tune.studies.results import EPOCH
from mtl_tune.studies.spec import SEED_GROUP_KEY, TrialReport
from mtl_tune.studies.store import append_group_events, here, local_path, read_group_events, uri_of

progress = logging.getLogger("mtl_tune.progress")  # the launch's concise progress lines


class SeedGroupScheduler(TrialScheduler):
    # one result at a time: a seed must be paused at the result that reaches a sync point
    _supports_buffered_results = False

    def __init__(
        self, log_path: Path, metric: str, mode: str, seeds: int, rungs: tuple[int, ...],
        reduction_factor: float, max_t: int,
    ) -> None:
        super().__init__()
        self._metric, self._mode = metric, mode
        self.log = uri_of(Path(log_path))  # a URI on a store: see `local_path`
        self.seeds, self.rungs, self.reduction_factor = seeds, rungs, reduction_factor
        self.max_t = max_t
        self._ledger: GroupLedger | None = None  # replayed from the log on first use
        self._open: dict[str, Trial] = {}  # trials added and not ended, in Tune's order

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "log_path" in state:  # pickled by a version that kept the path itself
            state["log"] = str(state.pop("log_path"))
        self.__dict__.update({"_open": {}, **state})

    def __getstate__(self) -> dict[str, Any]:
        # the log, not the pickle, holds the state; Tune adds its trials again on restore
        return {**self.__dict__, "_ledger": None, "_open": {}}

    @property
    def ledger(self) -> GroupLedger:
        if self._ledger is None:
            self._ledger = GroupLedger.replayed(
                read_group_events(here(local_path(self.log))), self.seeds, self._mode, self.rungs,
                self.reduction_factor,
            )
        return self._ledger

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return metric in (None, self._metric) and mode in (None, self._mode)

    def _log(self, events: list[dict[str, Any]]) -> None:
        append_group_events(here(local_path(self.log)), events)
        for event in events:
            if event["event"] == "wait":
                progress.info("%s paused at epoch %d: waits for the other seeds of group %s",
                              event["trial"], event["epoch"], event["group"])
            elif event["event"] == "decision":
                why = ""
                if event["why"] == "rung":
                    why = f" (worse than the rung's cutoff {event['cutoff']:.4f})"
                elif event["why"] == "patience":
                    why = f" (patience: {event['stale']} epochs no better)"
                progress.info(
                    "group %s epoch %d: mean %s %.4f over %d seeds -> %s%s", event["group"],
                    event["epoch"], self._metric, event["mean"], len(event["seeds"]),
                    event["decision"], why,
                )

    # -- Tune's hooks --

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        if trial.status not in (Trial.TERMINATED, Trial.ERROR):
            self._open.setdefault(trial.trial_id, trial)
        group = trial.config.get(SEED_GROUP_KEY)
        if group is None:
            return
        self.ledger.add_member(trial.trial_id, str(group))
        if trial.status in (Trial.TERMINATED, Trial.ERROR):  # restored, already ended
            self.ledger.ended.add(trial.trial_id)
        elif trial.status == Trial.PENDING and (
            self.ledger.waits(trial.trial_id, _epoch(trial))
            or self.ledger.stopped(str(group))
        ):
            # Tune restores a paused seed as PENDING and starts every pending trial, so it
            # would train past its rung: it is added as PAUSED again, and waits (or, its group
            # stopped by a logged decision, is run up to that point or stopped by
            # `choose_trial_to_run`)
            trial.set_status(Trial.PAUSED)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        group = trial.config.get(SEED_GROUP_KEY)
        if group is None or self._metric not in result or EPOCH not in result:
            return TrialScheduler.CONTINUE
        ledger, epoch, report = self.ledger, int(result[EPOCH]), TrialReport.from_result(result)
        events = [ledger.result(
            trial.trial_id, str(group), epoch, float(result[self._metric]),
            float(result.get("overall", result[self._metric])),
            report.group_patience, report.min_delta, report.epochs_planned,
        )]
        events += ledger.decide(str(group))
        waits = ledger.waits(trial.trial_id, epoch)
        if waits:
            events.append(ledger.apply({
                "event": "wait", "trial": trial.trial_id, "group": group, "epoch": epoch}))
        self._log(events)
        if ledger.stops(str(group), epoch) or epoch >= self.max_t:
            return TrialScheduler.STOP
        return TrialScheduler.PAUSE if waits else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._open.pop(trial.trial_id, None)
        group = self.ledger.group_of.get(trial.trial_id)
        if group is None or trial.trial_id in self.ledger.ended:
            return
        # its siblings may have waited only for it
        self._log([self.ledger.end(trial.trial_id), *self.ledger.decide(group)])

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        ledger = self.ledger
        resumable: list[Trial] = []
        completing: list[Trial] = []  # seeds that complete a group whose others wait
        new: list[Trial] = []
        # the trials not ended (Tune's whole list grows with the study)
        idle = [t for t in self._open.values() if t.status in (Trial.PENDING, Trial.PAUSED)]
        waiting = {t.trial_id for t in idle if ledger.waits(t.trial_id, _epoch(t))}
        waiting_groups = {ledger.group_of[t] for t in waiting}
        for trial in idle:
            group = ledger.group_of.get(trial.trial_id)
            if group is None:
                (resumable if trial.status == Trial.PAUSED else new).append(trial)
            elif ledger.stops(group, _epoch(trial)):
                tune_controller.stop_trial(trial)  # a waiting seed of a group stopped since
            elif trial.trial_id in waiting:
                continue
            elif ledger.stopped(group):
                resumable.append(trial)  # behind its group's stop (a resume): trains up to it
            elif trial.status == Trial.PAUSED:
                resumable.append(trial)
            else:
                (completing if group in waiting_groups else new).append(trial)
        for trials in (resumable, completing, new):
            if trials:
                return trials[0]
        return None

    def debug_string(self) -> str:
        ledger = self.ledger
        stopped = sum(g.stopped_at is not None for g in ledger.groups.values())
        return f"SeedGroupScheduler: {len(ledger.groups)} groups, {stopped} stopped"


def _epoch(trial: Trial) -> int:
    """The last epoch the trial reported, as Tune's (restored) state holds it; 0 before any."""
    return int(trial.last_result.get(EPOCH) or 0)
