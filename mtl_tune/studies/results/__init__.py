"""A study as its readers see it: the study opened (`StudyInfo`), its results frame, its status,
the best epochs and the next commands. No Ray, and nothing written."""

from __future__ import annotations

from mtl_tune.studies.results._commands import next_commands, resume_command, seeds_launch_command
from mtl_tune.studies.results._confirm_plan import (
    CONFIRM,
    ConfirmPlan,
    Selected,
    confirm_plan,
    confirm_scores,
)
from mtl_tune.studies.results._diverged import (
    DIVERGED,
    TRIVIAL_R,
    mark_diverged,
    trivial_baselines,
)
from mtl_tune.studies.results._epochs_run import SIMULATED_NOTE, run_lines
from mtl_tune.studies.results._folder import StudyInfo, open_study
from mtl_tune.studies.results._group_scores import EPOCH, best_epoch, by_epoch, epoch_means
from mtl_tune.studies.results._lineage import Segment, trial_lineage, trial_schedule
from mtl_tune.studies.results._replay_plan import ReplayPlan, replay_plan, replay_scores
from mtl_tune.studies.results._results import (
    experiment_results,
    load_results,
    read_result_rows,
    study_results,
)
from mtl_tune.studies.results._selection import (
    COUNTED,
    INTERRUPTED,
    TRIAL_KEYS,
    UNFINISHED,
    best_epochs,
    best_rerun,
    best_row,
    best_trial,
    trial_config,
)
from mtl_tune.studies.results._status import (
    ENDED,
    StudyView,
    list_studies,
    not_ended,
    status_view,
    study_status,
    view_study,
)

__all__ = [
    "DIVERGED",
    "TRIVIAL_R",
    "mark_diverged",
    "trivial_baselines",
    "CONFIRM",
    "ConfirmPlan",
    "Selected",
    "confirm_plan",
    "confirm_scores",
    "Segment",
    "trial_lineage",
    "trial_schedule",
    "ReplayPlan",
    "replay_plan",
    "replay_scores",
    "SIMULATED_NOTE",
    "StudyInfo",
    "open_study",
    "COUNTED",
    "ENDED",
    "EPOCH",
    "INTERRUPTED",
    "TRIAL_KEYS",
    "UNFINISHED",
    "best_epoch",
    "best_epochs",
    "best_rerun",
    "best_trial",
    "best_row",
    "by_epoch",
    "epoch_means",
    "experiment_results",
    "list_studies",
    "load_results",
    "next_commands",
    "not_ended",
    "read_result_rows",
    "resume_command",
    "run_lines",
    "seeds_launch_command",
    "StudyView",
    "view_study",
    "status_view",
    "study_results",
    "study_status",
    "trial_config",
]
