"""benchmarks/combination_cost.py: it runs every configuration and prints a ratio for each."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.process
def test_prints_a_ratio_per_configuration(tiny_bert_dir: Path, tiny_data_dir: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "combination_cost.py"), "--data-dir",
         str(tiny_data_dir), "--backbone", str(tiny_bert_dir), "--per-task", "48",
         "--batch-size", "8",
         "--rounds", "1", "--threads", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = {name: (float(ms), float(ratio), int(n)) for name, ms, ratio, n in re.findall(
        r"^(\w[\w ()]*?)\s+([\d.]+) ms\s+([\d.]+)\s+\((\d+)\)", run.stdout, re.M)}
    assert set(rows) == {"sum", "pcgrad", "cagrad", "uncertainty", "famo", "smart (1 step)",
                         "smart (2 steps)"}
    base = rows["sum"][0]
    for name, (ms, ratio, n) in rows.items():
        # each configuration timed over steps, its ratio its median over sum's (as printed:
        # milliseconds to 0.1, ratios to 0.01)
        assert ms > 0 and n > 0, name
        low, high = (ms - 0.05) / (base + 0.05), (ms + 0.05) / max(base - 0.05, 1e-9)
        assert low - 0.005 <= ratio <= high + 0.005, (name, ms, base, ratio)
