"""benchmarks/gpu_throughput.py: its smoke run on CPU, and the arithmetic of its GPU figures
(`benchmarks/_gpu_figures.py`)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_throughput.py"
FIGURES = REPO / "benchmarks" / "_gpu_figures.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_gpu_figures", FIGURES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.process
def test_smoke_run_measures_every_configuration(tiny_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    # torch.compile's precompiled headers go to <temp>/torchinductor_<user> whatever
    # TORCHINDUCTOR_CACHE_DIR says: a temp folder of the test's own keeps /tmp clean
    (tmp_path / "tmp").mkdir()
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--data-dir", str(tiny_data_dir), "--json", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},
    )
    # without CUDA the script runs its smoke test and succeeds
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {(r["shape"], r["combine"], r["compiled"]) for r in result["rows"]}
    # every combination of combine and compile was measured on the tiny shape, none failed
    assert rows == {("tiny", c, k) for c in ("sum", "pcgrad") for k in (False, True)}
    assert result["failures"] == []
    # the compiled path compiled once, in its first configuration
    compiled = [r for r in result["rows"] if r["compiled"]]
    assert compiled[0]["compile_s"] > 0 and all(r["examples_per_s"] > 0 for r in result["rows"])
    # compiled and eager encoders agree (float32 on CPU)
    assert result["tiny_compiled_rel_err"] < 1e-5
    # the side-by-side ratios are printed for both combines and both compile settings
    assert sum("compiled / eager" in line for line in result["ratios"]) == 2
    assert sum("pcgrad / sum" in line for line in result["ratios"]) == 2
    # the ends of the report: the table and the ratios
    assert "| tiny | pcgrad | on |" in run.stdout and "break-even" in run.stdout


@pytest.mark.parametrize(
    ("name", "override", "expected"),
    [("NVIDIA H200", None, 989.0), ("NVIDIA H100 80GB HBM3", None, 989.0),
     ("NVIDIA A100-SXM4-80GB", None, 312.0), ("NVIDIA L4", None, None),
     ("NVIDIA L4", 121.0, 121.0)],
)
def test_peak_by_device_name(
    bench: ModuleType, name: str, override: float | None, expected: float | None
) -> None:
    # the card's bf16 dense peak comes from the table by name, or --peak, else unknown
    assert bench.peak_tflops(name, override) == expected


def test_training_flops_of_bert_base(bench: ModuleType) -> None:
    config = bench.SHAPES["bert-base"]
    # 12 layers x (4 x 768^2 + 2 x 768 x 3072) = 84.9 M weights multiply each token
    assert bench.matmul_weights(config) == 84_934_656
    # 1,000 tokens of width 32: 6 N per token plus 12 L H T for attention
    assert bench.train_flops(1000, config, 32.0) == 1000 * (6 * 84_934_656 + 12 * 12 * 768 * 32)


def _row(bench: ModuleType, combine: str, compiled: bool, examples_per_s: float,
         overhead_s: float) -> object:
    return bench.Row(shape="bert-base", combine=combine, compiled=compiled, steps=100,
                     examples_per_s=examples_per_s, tokens_per_s=0.0, tflops=0.0,
                     peak_share=None, peak_mem_gib=0.0, compile_s=None, overhead_s=overhead_s)


def test_side_by_side_ratios(bench: ModuleType) -> None:
    # the lines a GPU run is judged by, from rows of one run (as measured on the H200 once)
    rows = [_row(bench, "sum", False, 1171.0, 0.5), _row(bench, "pcgrad", False, 1160.0, 0.5),
            _row(bench, "sum", True, 4850.0, 52.1), _row(bench, "pcgrad", True, 3704.0, 0.6)]
    lines = bench.ratio_lines(rows)
    # a pcgrad step takes sum's examples/s over pcgrad's: 4850 / 3704 = 1.31 compiled
    assert "bert-base compile=off: pcgrad / sum step time 1.01" in lines
    assert "bert-base compile=on: pcgrad / sum step time 1.31" in lines
    # the configuration that compiled: 51.6 s more than eager's first pass, 32 examples a batch
    # saved 32/1171 - 32/4850 = 20.7 ms each, so compiling pays after 2,489 batches
    assert ("bert-base sum: compiled / eager examples/s 4.14; compile cost 52 s, "
            "break-even after 2,489 batches") in lines
    # a configuration that reused the compiled code gets the ratio alone
    assert "bert-base pcgrad: compiled / eager examples/s 3.19" in lines
