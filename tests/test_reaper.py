"""mtl_tune._reaper: once the driver is gone, every process carrying its mark is stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from mtl_tune._reaper import OWNER_ENV

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_reaper_stops_the_marked_processes_when_the_driver_dies() -> None:
    env = {**os.environ, OWNER_ENV: "mark-1"}
    driver = subprocess.Popen(SLEEPER)
    marked = subprocess.Popen(SLEEPER, env=env)
    stranger = subprocess.Popen(SLEEPER, env={**os.environ, OWNER_ENV: "mark-2"})
    reaper = subprocess.Popen([sys.executable, "-m", "mtl_tune._reaper", str(driver.pid),
                               "mark-1"], start_new_session=True)
    try:
        time.sleep(1.5)
        # while the driver lives, its processes are left alone
        assert marked.poll() is None and reaper.poll() is None
        driver.kill()
        driver.wait()
        # once it is gone, the reaper stops the process with its mark, then exits itself
        assert marked.wait(20) is not None and reaper.wait(20) == 0
        # a process with another driver's mark survives
        assert stranger.poll() is None and psutil.pid_exists(stranger.pid)
    finally:
        for proc in (driver, marked, stranger, reaper):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
