"""What a run of a study trained, for the summary `study launch` and `resume` print: epochs
trained against planned, the trials stopped early by the epoch they stopped after, and how long
the trials take end to end on the study's concurrent slots, in epoch lengths (a simulated
study's answer to "how long will the real one run": multiply by a measured epoch time)."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence

# the first line of `study status` and of every report of a simulated study
SIMULATED_NOTE = ("SIMULATED study (launched with --simulate): no trial trained; its scores "
                  "come from a made-up response surface, not from a model")


def stopped_early(trial_epochs: Sequence[tuple[int, int]]) -> dict[int, int]:
    """Epoch a trial stopped after -> trials, for the trials that ended before their planned
    epochs (ASHA's rungs, patience, a seed group's decision; planned: up to ASHA's `max_t`),
    by epoch."""
    counts = Counter(trained for trained, planned in trial_epochs if trained < planned)
    return dict(sorted(counts.items()))


def epoch_lengths(trial_epochs: Sequence[tuple[int, int]], slots: int,
                  experiment_sizes: Sequence[int] = ()) -> int:
    """How many epoch lengths the trials take end to end when each starts, in order, on the
    first of `slots` concurrent slots to free up (list scheduling: it leaves out start-up and
    a seed group's seeds waiting for each other); the experiments (a sequential search's
    stages, `experiment_sizes` trials each) run one after another."""
    total, first = 0, 0
    for size in experiment_sizes or (len(trial_epochs),):
        free, end = [0] * max(slots, 1), 0
        for trained, _ in trial_epochs[first:first + size]:
            start = heapq.heappop(free)
            end = max(end, start + trained)
            heapq.heappush(free, start + trained)
        total, first = total + end, first + size
    return total


def run_lines(trial_epochs: Sequence[tuple[int, int]], slots: int, gpu_per_trial: float,
              epoch_seconds: float | None, experiment_sizes: Sequence[int] = ()) -> list[str]:
    """The summary's lines: epochs and early stops; with `epoch_seconds` (a simulated study's
    `--epoch-seconds`, when above 0), the wall time and GPU-hours it stands for."""
    trained = sum(t for t, _ in trial_epochs)
    planned = sum(p for _, p in trial_epochs)
    stops = stopped_early(trial_epochs)
    where = ", ".join(f"{n} after epoch {epoch}" for epoch, n in stops.items())
    lines = [f"epochs trained by the trials that ended: {trained} of {planned} planned; "
             f"{sum(stops.values())} trial(s) stopped early{': ' + where if where else ''}"]
    if epoch_seconds is None:
        return lines
    lengths = epoch_lengths(trial_epochs, slots, experiment_sizes)
    line = (f"end to end on {slots} trial(s) at a time: about {lengths} epoch lengths "
            "(times a measured epoch time, --epoch-seconds S, for the real run's wall time)")
    if epoch_seconds > 0:
        gpu_hours = trained * epoch_seconds * gpu_per_trial / 3600
        line = (f"end to end on {slots} trial(s) at a time: about {lengths} epoch lengths, "
                f"{_duration(lengths * epoch_seconds)} at {epoch_seconds:g} s per epoch"
                f"{f', {gpu_hours:.3g} GPU-hours' if gpu_per_trial else ''}")
    return [*lines, line]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
