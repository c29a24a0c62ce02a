"""Study specs, search spaces, launching and resuming on Ray Tune, and study status."""

from mtl_tune.studies._launch import (
    StudyOutcome,
    connect,
    launch_study,
    load_study_spec,
    resume_study,
)
from mtl_tune.studies._plan import describe, trial_count
from mtl_tune.studies._spec import (
    BUILTIN,
    Distribution,
    Resources,
    Scheduler,
    Stage,
    StudySpec,
    load_spec,
    parse_spec,
    spec_path,
)
from mtl_tune.studies._status import (
    INTERRUPTED,
    list_studies,
    study_driver,
    study_status,
    trial_table,
)
from mtl_tune.studies._storage import (
    STORAGE_ENV,
    disk_usage,
    human_bytes,
    read_meta,
    storage_root,
    study_folder,
)

__all__ = [
    "BUILTIN",
    "INTERRUPTED",
    "STORAGE_ENV",
    "Distribution",
    "Resources",
    "Scheduler",
    "Stage",
    "StudyOutcome",
    "StudySpec",
    "connect",
    "describe",
    "disk_usage",
    "human_bytes",
    "launch_study",
    "list_studies",
    "load_spec",
    "load_study_spec",
    "parse_spec",
    "read_meta",
    "resume_study",
    "spec_path",
    "storage_root",
    "study_folder",
    "study_driver",
    "study_status",
    "trial_count",
    "trial_table",
]
