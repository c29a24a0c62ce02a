"""Early stopping of trials by patience, as a Ray Tune stopper: it combines with ASHA.

The trainer counts the epochs in a row without a dev `overall` better by `min_delta` (a count
that is checkpointed, so it survives a resume) and reports it as `stale_epochs`, with the trial's
`patience`; the stopper ends a trial once the count reaches it. A seed of a seed group reports
a patience of 0: its group's scheduler decides on the seeds' mean (`_group_ledger`).
"""

from __future__ import annotations

from typing import Any

from ray.tune.stopper import Stopper


class PatienceStopper(Stopper):
    """Stops a trial after `patience` epochs without a better dev `overall` (0: never)."""

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        patience = float(result.get("patience", 0) or 0)
        return patience > 0 and float(result.get("stale_epochs", 0)) >= patience

    def stop_all(self) -> bool:
        return False
