"""mtl_tune._reaper: once the driver is gone, every process carrying its mark is stopped."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from mtl_tune._reaper import OWNER_ENV
from tests.helpers import unavailable

pytestmark = pytest.mark.process  # starts Ray or another process

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
# What Ray's agents do when they set their process title (`ray::DashboardAgent`): the title
# grows over the start of the environment block, which now begins with NUL bytes; the mark
# further on is still there. env_start is field 50 of /proc/self/stat.
RETITLED = [sys.executable, "-c",
            "import ctypes, time\n"
            "start = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[47])\n"
            "ctypes.memset(start, 0, 64)\n"
            "print('retitled', flush=True)\n"
            "time.sleep(120)"]
# The reaper with a test-only hook: each of its one-second looks at the driver's descendants
# prints "looked" before it sleeps, so a test knows that it has looked, instead of sleeping and
# hoping it did
REAPER = [sys.executable, "-c",
          "import sys, time\n"
          "from mtl_tune import _reaper\n"
          "plain = time.sleep\n"
          "def sleep(seconds):\n"
          "    print('looked', flush=True)\n"
          "    plain(seconds)\n"
          "time.sleep = sleep\n"
          "_reaper.main(sys.argv)"]


def _reaper(driver: subprocess.Popen, mark: str) -> subprocess.Popen:
    return subprocess.Popen([*REAPER, str(driver.pid), mark], stdout=subprocess.PIPE,
                            start_new_session=True)


def _looked(reaper: subprocess.Popen) -> None:
    """Returns once the reaper has looked at the driver's descendants."""
    assert reaper.stdout is not None and reaper.stdout.readline() == b"looked\n"


def test_reaper_stops_the_marked_processes_when_the_driver_dies() -> None:
    env = {**os.environ, OWNER_ENV: "mark-1"}
    driver = subprocess.Popen(SLEEPER)
    marked = subprocess.Popen(SLEEPER, env=env)
    stranger = subprocess.Popen(SLEEPER, env={**os.environ, OWNER_ENV: "mark-2"})
    reaper = _reaper(driver, "mark-1")
    try:
        _looked(reaper)
        _looked(reaper)
        # while the driver lives, its processes are left alone (two looks in)
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


def test_reaper_finds_the_mark_behind_a_process_title() -> None:
    if not sys.platform.startswith("linux"):
        unavailable("the reaper reads /proc: Linux only")
    # the mark last, behind more than the 64 bytes the title overwrites
    env = {**{k: v for k, v in os.environ.items() if k != OWNER_ENV}, OWNER_ENV: "mark-3"}
    driver = subprocess.Popen(SLEEPER)
    retitled = subprocess.Popen(RETITLED, env=env, stdout=subprocess.PIPE)
    reaper = None
    try:
        assert retitled.stdout is not None and retitled.stdout.readline() == b"retitled\n"
        # psutil stops reading the environment at the first empty entry: it sees none
        assert psutil.Process(retitled.pid).environ() == {}
        reaper = subprocess.Popen([sys.executable, "-m", "mtl_tune._reaper", str(driver.pid),
                                   "mark-3"], start_new_session=True)
        driver.kill()
        driver.wait()
        # the reaper still finds the mark and stops the process
        assert retitled.wait(20) is not None and reaper.wait(20) == 0
    finally:
        for proc in (driver, retitled, reaper):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_reaper_stops_a_descendant_whose_mark_cannot_be_read() -> None:
    # a driver with a child that carries no mark that can be read (Ray's agents, whose title
    # overwrote all of it): the reaper noted it as a descendant while the driver lived
    driver = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         f"child = subprocess.Popen({SLEEPER!r})\n"
         "print(child.pid, flush=True)\n"
         "time.sleep(120)"],
        stdout=subprocess.PIPE)
    assert driver.stdout is not None
    child = psutil.Process(int(driver.stdout.readline()))
    reaper = _reaper(driver, "mark-4")
    try:
        _looked(reaper)  # the reaper has noted the driver's descendants
        assert child.is_running()
        driver.kill()
        driver.wait()
        # orphaned, it is still stopped, then the reaper exits
        assert reaper.wait(20) == 0
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        for proc in (driver, reaper):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if child.is_running():
            child.kill()
