"""The Ray a study runs on: a cluster it joins, or one it starts for itself (loopback only, no
telemetry, nothing left behind), and whether its nodes can run the study's trials.

Left to its defaults, a local Ray reaches out: every process looks up "its" address with a UDP
connect to 8.8.8.8 and then serves on the machine's outward address, and the head asks the
cloud metadata services (169.254.169.254, metadata.google.internal) which cloud it runs on,
whatever the usage-stats setting. For a Ray of one machine none of that is needed, so its
processes start with:

- `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`: Ray's single-machine mode, every address 127.0.0.1
  (the default on Windows and macOS);
- `RAY_USAGE_STATS_ENABLED=0`: no usage report;
- `http_proxy` at a closed loopback port, with loopback exempt (`no_proxy`): the head's cloud
  probe (plain `requests`) fails at once instead of leaving the machine; nothing else in a local
  Ray speaks HTTP outside loopback.

The driver's own environment is restored once Ray has started. Every process of the Ray
carries a mark (`MTL_TUNE_RAY_OWNER`) by which a reaper (`mtl_tune._reaper`) finds and stops
them when the driver dies, even by SIGKILL.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import ray

from mtl_tune._reaper import OWNER_ENV
from mtl_tune.exceptions import SpecError
from mtl_tune.studies.spec import StudySpec
from mtl_tune.trainables import register_all

logger = logging.getLogger(__name__)
_REAPERS: list[subprocess.Popen] = []  # held, so Python does not warn that they still run

LOOPBACK = "127.0.0.1,localhost,::1"
CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: refused at once where nothing listens
LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "http_proxy": CLOSED_PORT,
    "HTTP_PROXY": CLOSED_PORT,
    "no_proxy": LOOPBACK,
    "NO_PROXY": LOOPBACK,
}


def planned_resources(spec: StudySpec) -> tuple[int, int]:
    """The logical CPUs and GPUs a study's concurrent trials ask for at their peak, in whole
    units (what a simulated study's local Ray offers, whatever this machine has)."""
    cpus = math.ceil(spec.resources.cpu * spec.max_concurrent)
    gpu = spec.resources.gpu
    if 0 < gpu < 1:  # a trial's fraction comes from one GPU: floor(1 / gpu) trials share one
        gpus = math.ceil(spec.max_concurrent / math.floor(1 / gpu))
    else:
        gpus = math.ceil(gpu) * spec.max_concurrent
    return max(cpus, 1), gpus


def connect(address: str | None, logical: tuple[int, int] | None = None) -> None:
    """Joins `address` (or $RAY_ADDRESS) if given, else starts a local Ray (loopback only), of
    `logical` (CPUs, GPUs) when given, else of this machine's."""
    # Tune forces a state snapshot after each kept checkpoint (crash safety) and warns about it
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address and address != "local":
            check_reachable(address)
            ray.init(address=address, log_to_driver=False)
        else:
            start_local_ray(*(logical or (None, None)))
    register_all()  # registrations live in the cluster: a new ray.init() starts without them


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Refuses a `host:port` cluster address that does not answer a TCP connect within
    `timeout` (Ray itself retries for minutes); `auto` and `ray://` addresses are Ray's to try.

    Raises:
        SpecError: Nothing listens there, or the address is not `host:port`.
    """
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SpecError(f"--address must be host:port (the head node's GCS port, e.g. "
                        f"10.0.0.1:6379), 'auto' or 'local', but got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise SpecError(
            f"cannot reach a Ray cluster at {address} ({err.strerror or err}); start one with "
            f"`ray start --head --port {port}` there, check the address and the firewall, or "
            "leave out --address to run on this machine"
        ) from None


def check_resources(spec: StudySpec) -> None:
    """Refuses per-trial resources that no alive node of the cluster can offer."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    wanted = {"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}
    if not any(all(n.get(k, 0.0) >= v for k, v in wanted.items() if v > 0) for n in nodes):
        offered = [{k: n.get(k, 0.0) for k in ("CPU", "GPU")} for n in nodes]
        raise SpecError(
            f"resources (cpu={spec.resources.cpu}, gpu={spec.resources.gpu}) per trial in "
            f"{spec.source}: no node offers them; nodes have {offered}"
        )


def start_local_ray(num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Starts a Ray of this machine, on loopback only, and its reaper; `num_cpus`/`num_gpus`:
    logical resources in place of the machine's."""
    import ray._private.ray_constants as constants

    mark = f"{os.getpid()}-{time.time_ns()}"  # every process of this Ray carries it
    env = {**LOCAL_ENV, OWNER_ENV: mark}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    # this process imported Ray before the variable was set: give it the same mode
    cluster_mode = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(include_dashboard=False, log_to_driver=False, num_cpus=num_cpus,
                 num_gpus=num_gpus)
    finally:
        constants.ENABLE_RAY_CLUSTER = cluster_mode
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    start_reaper(mark)


def start_reaper(mark: str) -> subprocess.Popen:
    """Starts `mtl_tune._reaper` for this process and its Ray, in a session of its own."""
    reaper = subprocess.Popen(
        [sys.executable, "-m", "mtl_tune._reaper", str(os.getpid()), mark],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _REAPERS.append(reaper)
    return reaper


def ray_temp_root() -> Path | None:
    """The temporary folder of the Ray this process runs (its sessions' parent); None before
    Ray starts."""
    node = ray._private.worker._global_node  # the only place Ray names it for a driver
    return None if node is None else Path(node.get_temp_dir_path())
