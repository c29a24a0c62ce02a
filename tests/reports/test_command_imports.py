"""Ray only where Ray runs: each command, run in a subprocess, and the modules it imported.

`train`, `predict`, `data ...`, `trainables list`, `report ...` and `study status/list` never
import Ray; `study status/list` and `trainables list` import neither Ray nor torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # each command runs in a subprocess

WRAPPER = """
import atexit, json, sys
out, args = sys.argv[1], sys.argv[2:]
atexit.register(lambda: json.dump({m: m in sys.modules for m in ("ray", "torch")},
                                  open(out, "w")))
sys.argv = ["mtl-tune", *args]
from mtl_tune.cli import main
main()
"""


def _imported(args: list[str], tmp_path: Path, data: Path | None = None) -> dict[str, bool]:
    out = tmp_path / "modules.json"
    env = {**os.environ, **({"MTL_TUNE_DATA": str(data)} if data else {})}
    run = subprocess.run([sys.executable, "-c", WRAPPER, str(out), *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def checkpoint(tiny_bert_dir: Path, tiny_data_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    args = ["train", "it6-balanced", "--set", f"backbone={tiny_bert_dir}", "--set",
            "batch_size=8", "--set", "max_length=32", "--epochs", "1", "--max-examples", "16",
            "--data-dir", str(tiny_data_dir), "--out", str(out)]
    # training one epoch, as `mtl-tune train` does, loads torch but never Ray
    assert _imported(args, tmp_path_factory.mktemp("train")) == {"ray": False, "torch": True}
    return out / "best"


def test_predict_and_data_commands_do_not_import_ray(
    checkpoint: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    commands = [
        ["predict", str(checkpoint), "--split", "dev", "--data-dir", str(tiny_data_dir)],
        ["data", "check", "--data-dir", str(tiny_data_dir)],
        ["data", "fetch", "--if-missing"],
    ]
    for args in commands:
        # none of them imports Ray (`data fetch --if-missing` finds the configured folder)
        assert not _imported(args, tmp_path, data=tiny_data_dir)["ray"], args


def test_report_commands_do_not_import_ray(study: Path, search_study: Path,
                                           tmp_path: Path) -> None:
    for args in (["report", "ablation", study.name, "--storage", str(study.parent),
                  "--out", str(tmp_path / "a"), "--formats", "md"],
                 ["report", "search", search_study.name, "--storage",
                  str(search_study.parent), "--out", str(tmp_path / "s"), "--formats", "md"]):
        # reports read the study through its files: no Ray
        assert not _imported(args, tmp_path)["ray"], args


def test_listing_commands_import_neither_ray_nor_torch(study: Path, tmp_path: Path,
                                                       tiny_data_dir: Path) -> None:
    for args in (["study", "status", study.name, "--storage", str(study.parent)],
                 ["study", "list", "--storage", str(study.parent)],
                 ["trainables", "list"],
                 ["data", "check"]):
        # status, list, the presets and the data's check are plain data: neither Ray nor torch
        assert _imported(args, tmp_path, data=tiny_data_dir) == {"ray": False,
                                                                 "torch": False}, args
