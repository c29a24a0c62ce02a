"""The session-end check (`tests/leaks.py`) fails a run that leaves a process or a file behind,
and passes one that leaves nothing: each planted in a pytest run of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.process

LEAKY = '''
import subprocess
import tempfile
from pathlib import Path


def test_leaks():
    subprocess.Popen(["sleep", "120"], start_new_session=True)
    (Path(tempfile.gettempdir()) / "{name}").mkdir()
'''
CLEAN = '''
def test_clean():
    assert True
'''


def _run(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    test = tmp_path / "test_planted.py"
    test.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "MTL_TUNE_LEAK_CHECK"}
    env["MTL_TUNE_LEAK_GRACE_S"] = "1"  # the planted process never exits by itself
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "tests.leaks",
         "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(test)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def _sleepers() -> set[int]:
    return {p.pid for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [])[:2] == ["sleep", "120"]}


def test_a_run_that_leaves_a_process_and_a_folder_fails(tmp_path: Path) -> None:
    name = f"leak-{uuid.uuid4().hex[:8]}"
    before = _sleepers()
    run = _run(tmp_path, LEAKY.format(name=name))
    out = run.stdout + run.stderr
    # the test passed, the run did not: exit 3, naming the process and the folder
    assert "1 passed" in out and run.returncode == 3, out
    assert "a process still running: pid" in out and "sleep 120" in out
    assert f"left in /tmp: /tmp/{name}" in out
    # the process, the suite's for sure, is killed; the folder is only named
    assert _sleepers() - before == set()
    (Path("/tmp") / name).rmdir()


def test_a_run_that_leaves_nothing_passes(tmp_path: Path) -> None:
    run = _run(tmp_path, CLEAN)
    # exit 0, and no leftovers section
    assert run.returncode == 0, run.stdout + run.stderr
    assert "leftovers" not in run.stdout
