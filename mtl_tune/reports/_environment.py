"""What a report says about where its numbers came from: package versions, devices, time used."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata

import pandas as pd

from mtl_tune.studies import PLACEMENT_KEYS, Placement, StudyInfo

PACKAGES = ("mtl-tune", "torch", "ray", "optuna", "pandas", "numpy", "scipy", "seaborn",
            "matplotlib")


@dataclass(frozen=True)
class Usage:
    trials: int
    trial_hours: float  # sum over trials of their wall time
    gpu_hours: float  # sum over trials of wall time x GPUs requested per trial
    cpu_hours: float  # the same with CPUs


def usage(results: pd.DataFrame) -> Usage:
    """Time used by the study's trials (a trial's wall time is its last `time_total_s`)."""
    per_trial = results.drop_duplicates(["experiment", "trial_id"], keep="last")
    seconds = per_trial["trial_seconds"].astype(float).fillna(0.0)
    return Usage(
        trials=len(per_trial),
        trial_hours=float(seconds.sum()) / 3600.0,
        gpu_hours=float((seconds * per_trial["gpus_per_trial"].astype(float)).sum()) / 3600.0,
        cpu_hours=float((seconds * per_trial["cpus_per_trial"].astype(float)).sum()) / 3600.0,
    )


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def placements(results: pd.DataFrame) -> list[Placement]:
    """Each distinct placement the trials reported (none before a trial's first epoch)."""
    if not set(PLACEMENT_KEYS) <= set(results.columns):
        return []
    seen = results[list(PLACEMENT_KEYS)].dropna(subset=list(PLACEMENT_KEYS[-1:]))  # device
    rows = seen.astype(object).where(seen.notna(), None).drop_duplicates()
    return [Placement(**row) for row in rows.to_dict("records")]


def devices(results: pd.DataFrame) -> list[str]:
    """'host: device (GPUs 0,1)' for each placement seen in the reported results."""
    out = set()
    for place in placements(results):
        gpus = place.gpu_ids
        gpu_text = f" (GPUs {gpus})" if isinstance(gpus, str) and gpus else ""
        out.add(f"{place.hostname}: {place.device}{gpu_text}")
    return sorted(out)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s ({seconds:.0f} s)"


def environment(results: pd.DataFrame, info: StudyInfo) -> dict[str, str]:
    """Label -> text rows for the report's environment section."""
    used = usage(results)
    if info.wall_seconds is not None:
        wall = _duration(info.wall_seconds)
    elif info.finished_at is None:
        wall = f"still running (started {info.started_at or 'at an unknown time'})"
    else:
        wall = "unknown (study.json gives no wall_seconds)"
    rows = {f"package {name}": version for name, version in package_versions().items()}
    rows.update(
        {
            "devices seen": "; ".join(devices(results)) or "none reported yet",
            "nodes seen": str(len({p.node_id for p in placements(results) if p.node_id})),
            "study wall time": wall,
            "trials": str(used.trials),
            "trial hours (sum of trial wall times)": f"{used.trial_hours:.4f}",
            "GPU-hours (trial wall time x GPUs per trial)": f"{used.gpu_hours:.4f}",
            "CPU-hours (trial wall time x CPUs per trial)": f"{used.cpu_hours:.4f}",
        }
    )
    return rows
