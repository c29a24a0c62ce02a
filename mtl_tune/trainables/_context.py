"""Where a trial runs, for real and simulated trials alike (no torch): its placement and the
folder it stages checkpoints in."""

from __future__ import annotations

import socket
from pathlib import Path

from ray import tune

from mtl_tune.studies import Placement, trial_staging


def placement(device: str = "") -> Placement:
    """This trial's host, node, GPU ids and CPUs (a real trial's device is known once it is
    built)."""
    import ray

    if not ray.is_initialized():
        return Placement(socket.gethostname(), node_id=None, gpu_ids="", cpus=0.0, device=device)
    context = ray.get_runtime_context()
    return Placement(
        hostname=socket.gethostname(),
        node_id=context.get_node_id(),
        gpu_ids=",".join(str(g) for g in ray.get_gpu_ids()),
        cpus=float(context.get_assigned_resources().get("CPU", 0)),
        device=device,
    )


def staging() -> Path:
    """This trial's checkpoint staging folder: in its trial folder on a local storage, else on
    this node (see `mtl_tune.studies.store._staging`), never the system's temporary folder."""
    context = tune.get_context()
    storage = context.get_storage()
    local = storage.storage_filesystem.type_name == "local"
    return trial_staging(Path(storage.trial_fs_path) if local else None, context.get_trial_id())
