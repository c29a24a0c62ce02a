"""benchmarks/driver_scale.py's pure parts: the study it runs is the built-in `search` at the
size asked, and its table prints each figure per size with the growth ratio."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from mtl_tune.studies.spec import load_spec
from tests.conftest import REPO


def _benchmark() -> Any:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("driver_scale",
                                                      REPO / "benchmarks" / "driver_scale.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_the_study_is_the_built_in_search_at_the_size_asked(tmp_path: Path) -> None:
    path = tmp_path / "scale.toml"
    path.write_text(_benchmark().spec_text(1000, "scale-1000"))
    spec = load_spec(str(path))
    builtin = load_spec("search")
    assert (spec.name, spec.num_samples, spec.seeds, spec.max_concurrent) == (
        "scale-1000", 500, 2, 16)
    assert (spec.resources.cpu, spec.resources.gpu) == (0.125, 0.0)
    # the same search: space, scheduler and search algorithm
    assert spec.space == builtin.space and spec.scheduler == builtin.scheduler
    assert spec.search == builtin.search == "optuna"


def _run(events: int, cpu: float, record: float, suggest: list[float]) -> dict[str, Any]:
    return {"wall_s": 10.0, "process_cpu_s": cpu, "cpu_s": {"trial record": record},
            "events": {"on_trial_result": events}, "suggest_s": suggest, "replay_s": 0.01,
            "peak_rss_bytes": 2**29}


def test_the_table_gives_each_figure_per_size_and_its_growth(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = _benchmark()
    measured = {"disk": {size: [{
        "launch": _run(90 * size // 10, 0.9 * size, 0.009 * size, [0.002] * 40),
        "resume": _run(10 * size // 10, 0.1 * size, 0.001 * size, [0.004] * 20),
        "readers": {"status": 1.0, "list": 1.0, "report": 5.0}, "before": None, "after": None,
        "folder_bytes": 1024 * size, "trials": size}] for size in (100, 1000)}}
    bench.print_table(measured)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert rows["figure"] == ["disk 100", "disk 1000", "disk x10 ratio"]
    # 100 ms of driver CPU and 1 ms of the record per event at both sizes: flat, ratio 1
    assert rows["driver CPU ms per event"] == ["100", "100", "1"]
    assert rows["trial record"] == ["1", "1", "1"]
    assert rows["TPE suggestion ms, last 20"] == ["4", "4", "1"]
    assert rows["study folder KiB per trial"] == ["1", "1", "1"]


def test_the_smallest_size_shows_the_median_of_its_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = _benchmark()

    def study(size: int, record_ms: float) -> dict[str, Any]:
        # `record_ms` of the trial record per event, over 10 events a trial
        return {"launch": _run(10 * size, 1.0 * size, record_ms / 100 * size, [0.002] * 40),
                "resume": _run(0, 0.0, 0.0, [0.002] * 20),
                "readers": {"status": 1.0, "list": 1.0, "report": 5.0}, "before": None,
                "after": None, "folder_bytes": 1024 * size, "trials": size}

    # three runs of 100 trials (one an outlier) and one of 1,000
    bench.print_table({"s3": {100: [study(100, 5.0), study(100, 6.0), study(100, 9.0)],
                              1000: [study(1000, 6.6)]}})
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert rows["figure"] == ["s3 100 (median of 3)", "s3 1000", "s3 x10 ratio"]
    assert rows["trial record"] == ["6", "6.6", "1.1"]
