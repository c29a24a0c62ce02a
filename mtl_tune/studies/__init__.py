"""Studies: specs, search spaces, launching and resuming on Ray Tune, and the study folder.

`studies/` owns the study folder: its layout, its metadata, the record of its trials, and the
results frame (one row per trial and epoch) that `study status` and the reports read.

Importing this package loads neither Ray nor torch: the names that need Ray (launching and
resuming) are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mtl_tune.studies._commands import next_commands, resume_command, seeds_launch_command
from mtl_tune.studies._folder import StudyInfo, find_experiments, open_study
from mtl_tune.studies._group_log import group_decisions
from mtl_tune.studies._group_scores import best_epoch, epoch_means
from mtl_tune.studies._object_store import is_staged, is_store_uri, uri_of
from mtl_tune.studies._optuna_storage import JOURNAL_PREFIX, open_storage
from mtl_tune.studies._plan import describe, trial_count
from mtl_tune.studies._results import experiment_results, load_results, study_results
from mtl_tune.studies._score_cache import (
    CachedScores,
    cache_scores,
    read_cached_scores,
    score_cache_key,
)
from mtl_tune.studies._selection import (
    COUNTED,
    TRIAL_KEYS,
    best_epochs,
    best_rerun,
    best_row,
    better,
    trial_config,
)
from mtl_tune.studies._spec import (
    BUILTIN,
    MODES,
    OPTUNA_SEARCHES,
    SEARCHES,
    Distribution,
    Objective,
    Resources,
    Scheduler,
    Stage,
    StudySpec,
    spec_path,
)
from mtl_tune.studies._spec_file import LaunchSpec, launch_spec, load_spec, parse_spec
from mtl_tune.studies._status import (
    INTERRUPTED,
    list_studies,
    study_driver,
    study_status,
    trial_table,
)
from mtl_tune.studies._storage import (
    REPORTS_DIR,
    STORAGE_ENV,
    disk_usage,
    existing_study,
    human_bytes,
    read_meta,
    storage_root,
    study_folder,
)
from mtl_tune.studies._store_pull import fetch_checkpoint, fetch_uri

if TYPE_CHECKING:
    from mtl_tune.studies._callbacks import TrialEvents
    from mtl_tune.studies._launch import (
        StudyOutcome,
        launch_study,
        load_study_spec,
        resume_study,
    )
    from mtl_tune.studies._local_ray import connect

_WITH_RAY = {
    **{name: "mtl_tune.studies._launch" for name in
       ("StudyOutcome", "launch_study", "load_study_spec", "resume_study")},
    "connect": "mtl_tune.studies._local_ray",
    "TrialEvents": "mtl_tune.studies._callbacks",
}


def __getattr__(name: str) -> Any:
    if name in _WITH_RAY:
        return getattr(importlib.import_module(_WITH_RAY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "OPTUNA_SEARCHES",
    "Objective",
    "CachedScores",
    "cache_scores",
    "read_cached_scores",
    "score_cache_key",
    "next_commands",
    "resume_command",
    "seeds_launch_command",
    "BUILTIN",
    "COUNTED",
    "INTERRUPTED",
    "JOURNAL_PREFIX",
    "MODES",
    "REPORTS_DIR",
    "SEARCHES",
    "STORAGE_ENV",
    "TRIAL_KEYS",
    "TrialEvents",
    "Distribution",
    "LaunchSpec",
    "Resources",
    "Scheduler",
    "Stage",
    "StudyInfo",
    "StudyOutcome",
    "StudySpec",
    "best_epochs",
    "group_decisions",
    "best_epoch",
    "epoch_means",
    "best_rerun",
    "best_row",
    "trial_config",
    "better",
    "connect",
    "describe",
    "disk_usage",
    "existing_study",
    "fetch_checkpoint",
    "fetch_uri",
    "is_staged",
    "is_store_uri",
    "experiment_results",
    "find_experiments",
    "human_bytes",
    "launch_spec",
    "launch_study",
    "list_studies",
    "load_results",
    "load_spec",
    "load_study_spec",
    "open_storage",
    "open_study",
    "parse_spec",
    "read_meta",
    "resume_study",
    "spec_path",
    "storage_root",
    "study_driver",
    "study_folder",
    "uri_of",
    "study_results",
    "study_status",
    "trial_count",
    "trial_table",
]
