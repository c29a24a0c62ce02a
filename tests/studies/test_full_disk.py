"""A full disk during a study: one `Error:` line that names the folder and the space needed, and
after space is freed `study resume` finishes every trial. The disk is a small tmpfs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtl_tune.studies import load_results
from tests.helpers import tmpfs
from tests.studies.conftest import CLI, NO_SCHEDULER, resume_cli, tiny_fixed, write_spec

TOP = """
name = "full"
trainables = ["it1-baseline", "it7-cosrelu-tuned", "it3-cosine-sts", "it6-balanced"]
search = "grid"
max_concurrent = 2
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 13 MB tmpfs: room for two of the tiny model's trials and their checkpoints, not four."""
    with tmpfs(tmp_path / "disk", "size=13m") as disk:
        yield disk


@pytest.mark.chaos
def test_a_full_disk_stops_with_one_error_and_resume_finishes_after(
    small_disk: Path, tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    path = write_spec(tmp_path, TOP, tiny_fixed(tiny_bert_dir, tiny_data_dir), NO_SCHEDULER)
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    launch = subprocess.run(
        [*CLI, "study", "launch", str(path), "--storage", str(small_disk), "--address", "local"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    last = launch.stderr.strip().splitlines()[-1]
    # the launch stops with exit 1 and one Error line that names the folder and how to go on
    assert launch.returncode == 1, launch.stderr[-3000:]
    assert last.startswith(f"Error: no space left on the device holding {small_disk / 'full'} ")
    assert "a checkpoint takes about" in last and "mtl-tune study resume full" in last
    # no "Aborted." from the command line's own handler
    assert "Aborted" not in launch.stderr

    # the disk grows (space is freed), and the study is resumed
    subprocess.run(["mount", "-o", "remount,size=80m", str(small_disk)], check=True)
    resume_cli("full", small_disk, ray_tmp, tmp_path / "resume.log")
    results = load_results(small_disk / "full")
    # every trial finished
    assert sorted(results.groupby("trial_id")["status"].last()) == ["TERMINATED"] * 4
