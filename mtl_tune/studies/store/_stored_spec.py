"""The spec a study was launched with, read back from its folder (spec.toml with study.json's
name, resources, seeds, samples and overrides applied), and the trials that spec plans: what an
interrupted study is judged against, not the trials Tune had created when it stopped."""

from __future__ import annotations

from pathlib import Path

from mtl_tune.exceptions import ConfigError, SpecError
from mtl_tune.studies.spec import StudySpec, parse_spec, read_toml, trial_count
from mtl_tune.studies.store._meta import StudyMeta, read_meta
from mtl_tune.studies.store._storage import META_FILE, SPEC_FILE


def load_study_spec(folder: Path, meta: StudyMeta | None = None) -> StudySpec:
    """The spec a study was launched with (its TOML plus the recorded overrides and name);
    `meta`: its study.json, if read already."""
    meta = read_meta(folder) if meta is None else meta
    raw = read_toml(folder / SPEC_FILE)[0]
    raw["name"] = meta.name
    if meta.resources:  # as launched, with --gpus-per-trial applied
        raw["resources"] = dict(meta.resources)
    if meta.seeds is not None:  # as launched, with --seeds applied
        raw["seeds"] = meta.seeds
    if meta.num_samples is not None:  # as launched, with --samples applied
        raw["num_samples"] = meta.num_samples
    return parse_spec(raw, str(folder / SPEC_FILE), dict(meta.overrides))


def planned_trials(folder: Path, meta: StudyMeta | None = None) -> int | None:
    """The trials the study's spec starts; None for a folder without a spec that still reads
    (no spec.toml, or one, or recorded --set values, this version no longer accepts): then
    only its trials are known. `meta`: its study.json, if read already. A confirmed study's
    fresh seeds count too (`study confirm`: each selected configuration on each)."""
    if not (folder / SPEC_FILE).is_file():
        return None
    if meta is None and (folder / META_FILE).is_file():
        meta = read_meta(folder)
    confirm = meta.confirm if meta is not None else {}
    fresh = len(confirm.get("selected", ())) * len(confirm.get("seeds", ())) if confirm else 0
    try:
        return trial_count(load_study_spec(folder, meta)) + fresh
    except (SpecError, ConfigError):
        return None
