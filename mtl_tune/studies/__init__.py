"""Studies: specs, the study folder, results, and launching and resuming on Ray Tune.

Four layers, each a subpackage that imports only the ones before it:

- `spec/`: reading, validating and describing a spec;
- `store/`: the study folder and every file in it, on a disk or an object store;
- `results/`: the results frame, status, best epochs, next commands;
- `driver/`: everything that runs Ray.

These are the names the CLI and `reports/` use. Importing this package loads neither Ray nor
torch: the driver's names are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mtl_tune.studies import _moved_modules as moved_modules
from mtl_tune.studies.results import (
    CONFIRM,
    COUNTED,
    DIVERGED,
    ENDED,
    EPOCH,
    INTERRUPTED,
    SIMULATED_NOTE,
    TRIAL_KEYS,
    TRIVIAL_R,
    UNFINISHED,
    ConfirmPlan,
    ReplayPlan,
    StudyInfo,
    best_epoch,
    best_epochs,
    best_rerun,
    best_row,
    best_trial,
    confirm_scores,
    epoch_means,
    list_studies,
    load_results,
    mark_diverged,
    next_commands,
    not_ended,
    open_study,
    read_result_rows,
    replay_plan,
    replay_scores,
    resume_command,
    seeds_launch_command,
    status_view,
    study_results,
    study_status,
    trial_lineage,
    trivial_baselines,
    view_study,
)
from mtl_tune.studies.spec import (
    PLACEMENT_KEYS,
    RAY_ID_ATTR,
    SEED_GROUP_KEY,
    EpochReport,
    Placement,
    TrialReport,
    describe,
    launch_spec,
    study_keys,
)
from mtl_tune.studies.store import (
    JOURNAL_PREFIX,
    REPORTS_DIR,
    StudyStore,
    cache_scores,
    check_private,
    disk_usage,
    end_staging,
    existing_study,
    fetch_checkpoint,
    fetch_uri,
    file_uri_path,
    group_decisions,
    human_bytes,
    is_store_uri,
    load_study_spec,
    open_storage,
    planned_trials,
    population_events,
    read_cached_scores,
    read_replays,
    refuse_running,
    score_cache_key,
    storage_root,
    study_folder,
    study_holding,
    trial_staging,
    uri_of,
    write_replay,
)

if TYPE_CHECKING:
    from mtl_tune.studies.driver import confirm_study, connect, launch_study, resume_study

_WITH_RAY = frozenset({"confirm_study", "connect", "launch_study", "resume_study"})


moved_modules.install()  # a study pickled by an earlier version names modules since moved


def __getattr__(name: str) -> Any:
    if name in _WITH_RAY:
        return getattr(importlib.import_module("mtl_tune.studies.driver"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DIVERGED",
    "TRIVIAL_R",
    "mark_diverged",
    "trivial_baselines",
    "CONFIRM",
    "ConfirmPlan",
    "confirm_scores",
    "load_study_spec",
    "read_result_rows",
    "trial_lineage",
    "ReplayPlan",
    "population_events",
    "read_replays",
    "replay_plan",
    "replay_scores",
    "write_replay",
    "SIMULATED_NOTE",
    "EpochReport",
    "PLACEMENT_KEYS",
    "Placement",
    "RAY_ID_ATTR",
    "SEED_GROUP_KEY",
    "TrialReport",
    "study_keys",
    "COUNTED",
    "ENDED",
    "EPOCH",
    "INTERRUPTED",
    "JOURNAL_PREFIX",
    "REPORTS_DIR",
    "StudyInfo",
    "StudyStore",
    "TRIAL_KEYS",
    "UNFINISHED",
    "best_epoch",
    "best_epochs",
    "best_rerun",
    "best_trial",
    "best_row",
    "cache_scores",
    "check_private",
    "connect",
    "describe",
    "disk_usage",
    "end_staging",
    "epoch_means",
    "existing_study",
    "fetch_checkpoint",
    "fetch_uri",
    "group_decisions",
    "human_bytes",
    "is_store_uri",
    "file_uri_path",
    "launch_spec",
    "launch_study",
    "list_studies",
    "load_results",
    "next_commands",
    "not_ended",
    "open_storage",
    "open_study",
    "planned_trials",
    "read_cached_scores",
    "refuse_running",
    "resume_command",
    "resume_study",
    "confirm_study",
    "score_cache_key",
    "seeds_launch_command",
    "storage_root",
    "view_study",
    "status_view",
    "study_folder",
    "study_holding",
    "study_results",
    "study_status",
    "trial_staging",
    "uri_of",
]
