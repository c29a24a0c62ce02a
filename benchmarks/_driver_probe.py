"""Measures a study driver from inside its own process, for `driver_scale.py`.

`Probe.install()` wraps the driver's parts (Tune callbacks, the seed-group scheduler, the
searcher, the lock's heartbeat, the ledger's replay) so that each call adds the CPU time of
the thread that ran it to its part, counts Ray Tune's trial events as its callback list
dispatches them, and times each of TPE's suggestions. `Probe.figures()` returns all of it with
the process's CPU time and peak memory. Only the outermost call of a part is timed, so a part
calling itself is not counted twice.
"""

from __future__ import annotations

import functools
import os
import resource
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

EVENT_HOOKS = ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error")
END_HOOKS = ("on_trial_complete", "on_trial_error")


class Probe:
    def __init__(self, kill_after: int | None = None, on_kill: Callable[[], None] = lambda: None):
        self.cpu: dict[str, float] = defaultdict(float)
        self.events: dict[str, int] = defaultdict(int)
        self.suggest_s: list[float] = []
        self.replay_s = 0.0
        self.kill_after, self.on_kill = kill_after, on_kill
        self._depth = threading.local()
        self._process0 = time.process_time()
        self._main0 = time.thread_time()
        self._wall0 = time.perf_counter()

    def _timed(self, part: str, method: Callable[..., Any]) -> Callable[..., Any]:
        probe = self

        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(probe._depth, part, 0)
            setattr(probe._depth, part, depth + 1)
            start = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                setattr(probe._depth, part, depth)
                if depth == 0:
                    probe.cpu[part] += time.thread_time() - start

        return timed

    def _wrap(self, cls: type, part: str, names: tuple[str, ...] | None = None) -> None:
        for name in names or [n for n in vars(cls) if n.startswith("on_") or n == "setup"]:
            setattr(cls, name, self._timed(part, getattr(cls, name)))

    def install(self) -> None:
        from ray.tune.callback import CallbackList

        from mtl_tune.studies.driver import _group_scheduler
        from mtl_tune.studies.driver._callbacks import ConciseProgress, FreshTrialLogs, TrialEvents
        from mtl_tune.studies.driver._digest_callback import ResultDigest
        from mtl_tune.studies.driver._group_ledger import GroupLedger
        from mtl_tune.studies.driver._optuna_mirror import OptunaMirror
        from mtl_tune.studies.driver._relocated_search import RelocatedSearch
        from mtl_tune.studies.driver._retention_callback import CheckpointRetention
        from mtl_tune.studies.driver._searcher import BestEpochSearch
        from mtl_tune.studies.driver._step_losses import StepLossLogger
        from mtl_tune.studies.store import DriverLock

        self._wrap(TrialEvents, "trial record")
        self._wrap(ResultDigest, "results digest")
        self._wrap(OptunaMirror, "Optuna mirror")
        self._wrap(_group_scheduler.SeedGroupScheduler, "seed-group scheduler", (
            "on_trial_add", "on_trial_result", "on_trial_complete", "on_trial_error",
            "on_trial_remove", "choose_trial_to_run"))
        self._wrap(CheckpointRetention, "lean checkpoints", (
            "setup", "on_step_begin", "on_checkpoint", "on_trial_complete", "on_trial_error",
            "on_step_end", "on_experiment_end"))
        self._wrap(DriverLock, "lock heartbeat", ("_beat",))
        for cls in (ConciseProgress, FreshTrialLogs, StepLossLogger):
            self._wrap(cls, "progress lines and logs")
        self._wrap(RelocatedSearch, "searcher", (
            "next_trial", "on_trial_result", "on_trial_complete"))

        suggest = BestEpochSearch.suggest

        def timed_suggest(searcher: Any, trial_id: str) -> Any:
            start = time.perf_counter()
            try:
                return suggest(searcher, trial_id)
            finally:
                self.suggest_s.append(time.perf_counter() - start)

        BestEpochSearch.suggest = timed_suggest  # type: ignore[method-assign]

        replayed = GroupLedger.replayed.__func__  # type: ignore[attr-defined]

        def timed_replay(cls: type, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return replayed(cls, *args, **kwargs)
            finally:
                self.replay_s += time.perf_counter() - start

        GroupLedger.replayed = classmethod(timed_replay)  # type: ignore[assignment]

        for hook in EVENT_HOOKS:
            self._count(CallbackList, hook)

    def _count(self, cls: type, hook: str) -> None:
        method = getattr(cls, hook)
        probe = self

        @functools.wraps(method)
        def counted(callbacks: Any, **info: Any) -> Any:
            out = method(callbacks, **info)
            probe.events[hook] += 1
            ended = sum(probe.events[h] for h in END_HOOKS)
            if probe.kill_after is not None and ended >= probe.kill_after:
                probe.on_kill()
                os.kill(os.getpid(), signal.SIGKILL)  # the bad instant: nothing flushed after
            return out

        setattr(cls, hook, counted)

    def figures(self) -> dict[str, Any]:
        return {
            "wall_s": time.perf_counter() - self._wall0,
            "process_cpu_s": time.process_time() - self._process0,
            "main_thread_cpu_s": time.thread_time() - self._main0,
            "cpu_s": dict(self.cpu),
            "events": dict(self.events),
            "suggest_s": self.suggest_s,
            "replay_s": self.replay_s,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "torch_imported": "torch" in sys.modules,
        }
