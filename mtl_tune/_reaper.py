"""Kills what a driver's local Ray leaves behind once the driver is gone, even after a SIGKILL.

Run as `python -m mtl_tune._reaper PID MARK` in a session of its own (so that killing the
driver's process group spares it). The driver started its Ray with the environment variable
`MTL_TUNE_RAY_OWNER=MARK`, which every Ray process inherits (workers too, through the raylet).
Once PID is gone, the reaper stops every process carrying that mark (SIGTERM, then SIGKILL),
twice, a second apart, in case a dying raylet was still starting a worker; then it exits. Ray's
agents (`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) otherwise outlive a killed driver.
It imports only psutil, not Ray or torch.
"""

from __future__ import annotations

import os
import sys
import time

import psutil

OWNER_ENV = "MTL_TUNE_RAY_OWNER"
POLL_SECONDS = 1.0
GRACE_SECONDS = 3.0


def wait_for_exit(pid: int) -> None:
    """Returns once process `pid` has exited."""
    try:
        driver = psutil.Process(pid)
        while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
            time.sleep(POLL_SECONDS)
    except psutil.NoSuchProcess:
        return


def marked(mark: str) -> list[psutil.Process]:
    """Every running process (but this one) whose environment has OWNER_ENV=mark."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(OWNER_ENV) == mark:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop(processes: list[psutil.Process]) -> None:
    """SIGTERM, a grace period, then SIGKILL (psutil tells a reused pid apart by start time)."""
    alive = []
    for proc in processes:
        try:
            proc.terminate()
            alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    _, left = psutil.wait_procs(alive, timeout=GRACE_SECONDS)
    for proc in left:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue


def main(argv: list[str]) -> None:
    pid, mark = int(argv[1]), argv[2]
    wait_for_exit(pid)
    for _ in range(2):
        stop(marked(mark))
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    main(sys.argv)
