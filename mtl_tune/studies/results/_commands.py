"""The `mtl-tune` (and companion tool) commands a user runs next on a study, as shell lines."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from mtl_tune.studies.store import SPEC_FILE, TUNE_DIR, read_meta, study_folder, uri_of


def resume_command(root: Path, name: str) -> str:
    """The command that continues an interrupted study (on its cluster, if it ran on one)."""
    address = read_meta(study_folder(root, name)).address
    cluster = f" --address {shlex.quote(address)}" if address and address != "local" else ""
    storage = shlex.quote(uri_of(root))
    return f"mtl-tune study resume {shlex.quote(name)} --storage {storage}{cluster}"


def next_commands(root: Path, name: str) -> list[str]:
    """What to run on a finished study: its report (ablation for a grid, else search), its
    Optuna record, its TensorBoard."""
    folder = study_folder(root, name)
    meta = read_meta(folder)
    kind = "ablation" if meta.search == "grid" else "search"
    lines = [f"mtl-tune report {kind} {shlex.quote(name)} --storage {shlex.quote(uri_of(root))}"]
    url = meta.optuna_storage
    viewers = []
    if url.startswith("sqlite:///"):
        viewers.append(("optuna-dashboard", f"optuna-dashboard {shlex.quote(url)}"))
    logdir = shlex.quote(uri_of(folder / TUNE_DIR))
    viewers.append(("tensorboard", f"tensorboard --logdir {logdir}"))
    for tool, command in viewers:
        # a tool the install lacks: say which extra brings it
        missing = "" if shutil.which(tool) else "  # pip install 'mtl-tune[dashboard]'"
        lines.append(command + missing)
    return lines


def seeds_launch_command(folder: Path, seeds: int) -> str:
    """Launches the study's spec again, as it was launched, with `seeds` seeds per row.

    The new study (`<name>-<seeds>-seeds`, beside the old one) repeats the old seeds too, so its
    ablation report compares every row over the same seeds.
    """
    meta = read_meta(folder)
    name = folder.name  # a copied study's, not the name it was launched as
    parts = ["mtl-tune", "study", "launch", str(folder / SPEC_FILE), "--name",
             f"{name}-{seeds}-seeds", "--seeds", str(seeds), "--storage", uri_of(folder.parent)]
    gpu = meta.resources.get("gpu", 0)
    if gpu:
        parts += ["--gpus-per-trial", f"{gpu:g}"]
    for key, value in meta.overrides.items():
        parts += ["--set", f"{key}={value}"]
    return shlex.join(parts)
