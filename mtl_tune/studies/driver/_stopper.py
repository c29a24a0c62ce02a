"""Early stopping of trials by patience, as a Ray Tune stopper: it combines with ASHA.

The trainer counts the epochs in a row without a dev `overall` better by `min_delta` (a count
that is checkpointed, so it survives a resume) and reports it as `stale_epochs`, with the trial's
`patience`; the stopper ends a trial once the count reaches it. A seed of a seed group reports
a patience of 0: its group's scheduler decides on the seeds' mean (`_group_ledger`).
"""

from __future__ import annotations

from typing import Any

from ray.tune.stopper import Stopper

from mtl_tune.platform.patience import patience_ran_out
from mtl_tune.studies.spec import TrialReport


class PatienceStopper(Stopper):
    """Stops a trial after `patience` epochs without a better dev `overall` (0: never)."""

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        report = TrialReport.from_result(result)
        return patience_ran_out(report.stale_epochs, report.patience)

    def stop_all(self) -> bool:
        return False
