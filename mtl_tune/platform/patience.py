"""The early-stopping rule, one place for a trial's trainer and for a seed group's scheduler.

An epoch counts as better when its dev `overall` reaches the last better epoch's by `min_delta`;
`patience` epochs in a row that are not better stop the run (0: never).
"""

from __future__ import annotations


def patience_step(
    reference: float, stale: int, overall: float, min_delta: float
) -> tuple[float, int]:
    """(reference, stale epochs) after an epoch that scored `overall`."""
    if overall >= reference + min_delta:
        return overall, 0
    return reference, stale + 1


def patience_ran_out(stale: int, patience: int) -> bool:
    return 0 < patience <= stale
