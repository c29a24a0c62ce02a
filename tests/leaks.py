"""A pytest plugin that fails the run when the suite leaves something behind on the machine.

At the start of the session it marks the environment (`MTL_TUNE_TEST_RUN`, inherited by every
process the suite starts: Ray's, moto's, CLI drivers, reapers), gives the suite's own Rays a
private RAY_TMPDIR (their session folders), and notes the mounts and the entries of the system's
temporary folder. At the end it stops the suite's shared Ray and removes that RAY_TMPDIR, then
fails the run (exit 3) naming each leftover:

- a process carrying the mark that is still alive 20 s after the last test (killed: it is the
  suite's for sure);
- a mount that was not there before (unmounted when it lies in pytest's temporary folder);
- an entry of the temporary folder that was not there before, outside pytest's own folders
  (`pytest-of-<user>`): a killed trial's checkpoint, a Ray session folder, a test's mkdtemp.
  Named, not removed: another job on the machine may have made it.

Loaded by `tests/conftest.py`; `MTL_TUNE_LEAK_CHECK=0` turns the check (not the private
RAY_TMPDIR) off, e.g. while other jobs write to the same temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

RUN_ENV = "MTL_TUNE_TEST_RUN"
SWITCH_ENV = "MTL_TUNE_LEAK_CHECK"
GRACE_ENV = "MTL_TUNE_LEAK_GRACE_S"  # how long processes get to exit (default 20 s)
GRACE_SECONDS = 20.0  # a killed driver's reaper needs a few seconds to stop its Ray
EXIT_LEFT_BEHIND = 3  # pytest's "internal error" code: the tests passed, the run did not


class _Before:
    mark = ""
    ray_tmp: Path | None = None
    mounts: set[str] = set()
    temp: set[str] = set()
    worker = False


def _mounts() -> set[str]:
    try:
        with open("/proc/mounts", encoding="utf-8") as handle:
            return {line.split()[1] for line in handle if len(line.split()) > 1}
    except OSError:  # not Linux: nothing to compare
        return set()


def _temp() -> Path:
    return Path(tempfile.gettempdir())


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _marked(mark: str) -> list[psutil.Process]:
    """Living processes (but this one) whose environment holds RUN_ENV=mark."""
    entry = f"{RUN_ENV}={mark}".encode()
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            with open(f"/proc/{proc.pid}/environ", "rb") as handle:
                if entry in handle.read().split(b"\0"):
                    found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} {' '.join(proc.cmdline())[:120] or proc.name()}"
    except psutil.Error:
        return f"pid {proc.pid}"


def _enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "1") != "0" and sys.platform.startswith("linux")


def pytest_configure(config: pytest.Config) -> None:
    if _Before.mark:
        return
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller checks the run
        _Before.worker = True
        _Before.mark = os.environ.get(RUN_ENV, "")
        return
    _Before.mark = f"{os.getpid()}-{time.time_ns()}"
    os.environ[RUN_ENV] = _Before.mark
    _Before.mounts = _mounts()
    _Before.temp = _entries(_temp())
    if "RAY_TMPDIR" not in os.environ:
        # short: Ray's socket paths must stay under 108 characters
        _Before.ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir=_temp()))
        os.environ["RAY_TMPDIR"] = str(_Before.ray_tmp)


def _stop_shared_ray() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def _stop_suite() -> None:
    """Stops the suite's shared Ray and removes the suite's RAY_TMPDIR (its Rays' sessions)."""
    _stop_shared_ray()
    if _Before.ray_tmp is not None:
        shutil.rmtree(_Before.ray_tmp, ignore_errors=True)


def left_behind(basetemp: Path) -> list[str]:
    """Everything the run left, one line each (its processes killed, its mounts unmounted);
    `basetemp` is pytest's temporary folder of this run."""
    lines = []
    deadline = time.monotonic() + float(os.environ.get(GRACE_ENV, GRACE_SECONDS))
    alive = _marked(_Before.mark)
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = _marked(_Before.mark)
    for proc in alive:
        lines.append(f"a process still running: {_describe(proc)}")
        try:
            proc.kill()
        except psutil.Error:
            pass
    for mount in sorted(_mounts() - _Before.mounts):
        lines.append(f"a mount still mounted: {mount}")
        if mount.startswith(f"{basetemp}{os.sep}"):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
    ours = {basetemp.relative_to(_temp()).parts[0]} if basetemp.is_relative_to(_temp()) else set()
    for name in sorted(_entries(_temp()) - _Before.temp - ours):
        lines.append(f"left in {_temp()}: {_temp() / name}")
    return lines


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _Before.mark:
        return
    if _Before.worker:  # its own shared Ray; the controller looks for leftovers once all ended
        _stop_shared_ray()
        return
    _stop_suite()
    basetemp = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    lines = left_behind(Path(basetemp)) if _enabled() else []
    if not lines:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    text = "the test run left these behind:\n  " + "\n  ".join(lines)
    if reporter is not None:
        reporter.write_sep("=", "leftovers", red=True)
        reporter.write_line(text)
    else:
        print(text, file=sys.stderr)
    session.exitstatus = EXIT_LEFT_BEHIND
