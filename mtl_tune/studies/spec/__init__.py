"""Reading, validating and describing a study spec: TOML, search spaces, stages, the plan and dry
run. No Ray, no study-folder I/O."""

from __future__ import annotations

from mtl_tune.studies.spec._conditions import (
    Condition,
    active,
    grid_points,
    grid_size,
    sampling_order,
    searched_space,
)
from mtl_tune.studies.spec._plan import asha_rungs, describe, experiment_trials, trial_count
from mtl_tune.studies.spec._resolved import ResolvedStudy, resolve_study
from mtl_tune.studies.spec._seed_design import SEED_DESIGNS, seed_runs
from mtl_tune.studies.spec._spec import (
    BUILTIN,
    KEEP_CHOICES,
    MODES,
    OPTUNA_SEARCHES,
    SEARCHES,
    Distribution,
    Objective,
    Resources,
    StudySpec,
    better,
    check_mode,
    check_study_name,
)
from mtl_tune.studies.spec._spec_file import launch_spec, load_spec, parse_spec, read_toml
from mtl_tune.studies.spec._trial_report import (
    CURVE_KEY,
    ITERATION,
    PLACEMENT_KEYS,
    RAY_ID_ATTR,
    REPORT_KEYS,
    SEED_GROUP_KEY,
    TRIAL_ID,
    TUNE_KEYS,
    EpochReport,
    Placement,
    TrialReport,
    study_keys,
)

__all__ = [
    "Condition",
    "Distribution",
    "active",
    "grid_points",
    "SEED_DESIGNS",
    "seed_runs",
    "grid_size",
    "sampling_order",
    "searched_space",
    "ResolvedStudy",
    "resolve_study",
    "CURVE_KEY",
    "EpochReport",
    "ITERATION",
    "PLACEMENT_KEYS",
    "Placement",
    "RAY_ID_ATTR",
    "REPORT_KEYS",
    "TRIAL_ID",
    "TUNE_KEYS",
    "SEED_GROUP_KEY",
    "TrialReport",
    "study_keys",
    "BUILTIN",
    "KEEP_CHOICES",
    "MODES",
    "OPTUNA_SEARCHES",
    "Objective",
    "Resources",
    "SEARCHES",
    "StudySpec",
    "asha_rungs",
    "better",
    "check_mode",
    "check_study_name",
    "describe",
    "launch_spec",
    "load_spec",
    "parse_spec",
    "read_toml",
    "trial_count",
    "experiment_trials",
]
