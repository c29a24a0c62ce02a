"""benchmarks/status_time.py: it times `study status` against its reference and prints both
medians and their ratio."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.studies.test_inputs import _finished_study


@pytest.mark.process
def test_prints_both_medians_and_their_ratio(tmp_path: Path) -> None:
    _finished_study(tmp_path / "studies")
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "status_time.py"), "s", "--storage",
         str(tmp_path / "studies"), "--runs", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    found = re.fullmatch(r"study status s: ([\d.]+) s median over 1 runs; with scipy.stats "
                         r"imported first \(the reference\): ([\d.]+) s; ratio current / "
                         r"reference, median of pairs: ([\d.]+)\n", run.stdout)
    assert found, run.stdout
    ours, theirs, ratio = map(float, found.groups())
    assert ours > 0 and theirs > 0
    assert ratio == pytest.approx(ours / theirs, abs=0.01)
