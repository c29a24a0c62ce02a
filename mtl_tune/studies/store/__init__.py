"""The study folder behind one `StudyStore` (a local folder or an object store's staged copy):
every study file is read, written, appended, listed and deleted here. No Ray."""

from __future__ import annotations

from mtl_tune.studies.store._disk import no_space_error
from mtl_tune.studies.store._group_log import (
    append_group_events,
    group_decisions,
    group_log_path,
    population_events,
    population_log_path,
    read_group_events,
)
from mtl_tune.studies.store._json_lines import read_json_lines
from mtl_tune.studies.store._lean import drop_finished_optimizer_state, drop_trial_optimizer_state
from mtl_tune.studies.store._lock import DriverLock, Holder, live_holder, refuse_running
from mtl_tune.studies.store._lost_results import recover_trial_logs
from mtl_tune.studies.store._meta import (
    StudyMeta,
    adopt_folder,
    default_optuna_url,
    read_meta,
    write_meta,
)
from mtl_tune.studies.store._object_store import local_path, uri_of
from mtl_tune.studies.store._optuna_storage import JOURNAL_PREFIX, open_storage
from mtl_tune.studies.store._relocation import here, here_url
from mtl_tune.studies.store._replay_records import (
    REPLAYS_DIR,
    read_replays,
    replay_record_name,
    write_replay,
)
from mtl_tune.studies.store._result_digest import append_result, begin_digest, read_digest
from mtl_tune.studies.store._retention import prune_trial, trial_rows
from mtl_tune.studies.store._rewound_results import rewind_trial_logs
from mtl_tune.studies.store._saved_state import (
    SavedTrial,
    repair_saved_state,
    saved_trials,
    saved_trials_in,
    snapshot,
    state_stamp,
    write_whole,
)
from mtl_tune.studies.store._score_cache import cache_scores, read_cached_scores, score_cache_key
from mtl_tune.studies.store._staging import (
    clear_staging,
    drop_trial_staging,
    end_staging,
    trial_staging,
)
from mtl_tune.studies.store._storage import (
    EVENTS_FILE,
    META_FILE,
    OPTUNA_FILE,
    REPORTS_DIR,
    SPEC_FILE,
    TUNE_DIR,
    check_private,
    disk_usage,
    existing_study,
    human_bytes,
    storage_root,
    study_folder,
    study_holding,
    study_names,
)
from mtl_tune.studies.store._store_pull import fetch_checkpoint, fetch_uri, pull
from mtl_tune.studies.store._stored_spec import load_study_spec, planned_trials
from mtl_tune.studies.store._study_store import StudyStore, driver_copy
from mtl_tune.studies.store._trial_log import (
    TrialRecord,
    append_event,
    read_trials,
    repair_record,
    staged_path,
)
from mtl_tune.studies.store._tune_files import TuneFiles, upload_if_longer
from mtl_tune.studies.store._tune_storage import tune_storage
from mtl_tune.studies.store._uris import file_uri_path, is_store_uri

__all__ = [
    "REPLAYS_DIR",
    "read_replays",
    "replay_record_name",
    "write_replay",
    "load_study_spec",
    "planned_trials",
    "drop_trial_staging",
    "refuse_running",
    "SavedTrial",
    "trial_rows",
    "clear_staging",
    "end_staging",
    "trial_staging",
    "DriverLock",
    "EVENTS_FILE",
    "Holder",
    "JOURNAL_PREFIX",
    "META_FILE",
    "OPTUNA_FILE",
    "REPORTS_DIR",
    "SPEC_FILE",
    "StudyMeta",
    "StudyStore",
    "TUNE_DIR",
    "TrialRecord",
    "TuneFiles",
    "adopt_folder",
    "append_event",
    "append_result",
    "begin_digest",
    "read_digest",
    "append_group_events",
    "cache_scores",
    "check_private",
    "default_optuna_url",
    "disk_usage",
    "drop_finished_optimizer_state",
    "driver_copy",
    "drop_trial_optimizer_state",
    "existing_study",
    "study_holding",
    "fetch_checkpoint",
    "fetch_uri",
    "group_decisions",
    "group_log_path",
    "here",
    "here_url",
    "human_bytes",
    "is_store_uri",
    "file_uri_path",
    "live_holder",
    "local_path",
    "no_space_error",
    "open_storage",
    "prune_trial",
    "pull",
    "read_cached_scores",
    "population_events",
    "population_log_path",
    "read_group_events",
    "read_json_lines",
    "read_meta",
    "read_trials",
    "recover_trial_logs",
    "rewind_trial_logs",
    "repair_record",
    "repair_saved_state",
    "saved_trials",
    "saved_trials_in",
    "write_whole",
    "score_cache_key",
    "snapshot",
    "staged_path",
    "state_stamp",
    "storage_root",
    "study_folder",
    "study_names",
    "tune_storage",
    "upload_if_longer",
    "uri_of",
    "write_meta",
]
