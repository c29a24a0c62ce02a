"""Kills what a driver's local Ray leaves behind once the driver is gone, even after a SIGKILL.

Run as `python -m mtl_tune._reaper PID MARK` in a session of its own (so that killing the
driver's process group spares it). The driver started its Ray with the environment variable
`MTL_TUNE_RAY_OWNER=MARK`, which every Ray process inherits (workers too, through the raylet).
While PID lives, the reaper notes its descendants every second; once PID is gone, it stops
every process carrying that mark and every noted descendant still running (SIGTERM, then
SIGKILL), twice, a second apart, in case a dying raylet was still starting a worker; then it
exits. Ray's agents (`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) otherwise outlive a killed
driver, and the mark alone does not find them: setting their process title overwrites the part
of their environment block that /proc shows.
It imports only psutil, not Ray or torch."""

from __future__ import annotations

import os
import sys
import time

import psutil

OWNER_ENV = "MTL_TUNE_RAY_OWNER"
POLL_SECONDS = 1.0
GRACE_SECONDS = 3.0


def wait_for_exit(pid: int) -> list[psutil.Process]:
    """Returns once process `pid` has exited, with its descendants as last seen (but this one).

    psutil tells a reused pid apart by its start time, so a noted process that has exited
    never stands for a newer one.
    """
    noted: dict[int, psutil.Process] = {}
    try:
        driver = psutil.Process(pid)
        while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
            for child in driver.children(recursive=True):
                noted.setdefault(child.pid, child)
            time.sleep(POLL_SECONDS)
    except psutil.NoSuchProcess:
        pass
    return [p for p in noted.values() if p.pid != os.getpid()]


def environ_has(proc: psutil.Process, entry: str) -> bool:
    """Whether `proc` was started with `entry` ("NAME=value") in its environment.

    On Linux every entry of /proc/PID/environ is searched: a process that set its title (Ray's
    agents become `ray::DashboardAgent`) overwrites the start of that block with NUL bytes, and
    psutil's `environ()` stops at the first empty entry, so it sees no variable at all.
    """
    if sys.platform.startswith("linux"):
        with open(f"/proc/{proc.pid}/environ", "rb") as handle:
            return entry.encode() in handle.read().split(b"\0")
    name, _, value = entry.partition("=")
    return proc.environ().get(name) == value


def marked(mark: str) -> list[psutil.Process]:
    """Every running process (but this one) whose environment has OWNER_ENV=mark."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and environ_has(proc, f"{OWNER_ENV}={mark}"):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue  # gone, or not ours to read
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
    descendants = wait_for_exit(pid)
    for _ in range(2):
        found = {p.pid: p for p in [*descendants, *marked(mark)] if p.is_running()}
        stop(list(found.values()))
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    main(sys.argv)
