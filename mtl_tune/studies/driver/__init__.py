"""Everything that runs Ray: launch and resume, the Tune objects and callbacks, the seed-group
scheduler and searcher, the Optuna mirror, the local Ray and its reaper. The only layer of
`studies/` that imports Ray."""

from __future__ import annotations

from mtl_tune.studies.driver._callbacks import TrialEvents
from mtl_tune.studies.driver._launch import (
    StudyOutcome,
    confirm_study,
    launch_study,
    resume_study,
)
from mtl_tune.studies.driver._local_ray import connect

__all__ = ["StudyOutcome", "TrialEvents", "confirm_study", "connect", "launch_study",
           "resume_study"]
