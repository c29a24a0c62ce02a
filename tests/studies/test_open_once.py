"""A command opens a study once: one pull from the object store (S3 on loopback, moto's server),
one read of study.json, of the spec and of the trial record, one results frame, one read of the
lock, for `study status` (text and JSON, with --best) and per study for `study list`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.studies.results import _results
from mtl_tune.studies.store import _lock, _meta, _stored_spec, _study_store, _trial_log
from tests.studies.test_inputs import _finished_study

pytestmark = pytest.mark.process  # moto's server

COUNTED = {  # what is counted -> (module, the function each read goes through)
    "pull": (_study_store, "pull"),
    "study.json": (_meta, "read_meta_file"),
    "spec.toml": (_stored_spec, "read_toml"),
    "trials.jsonl": (_trial_log, "parse_json_lines"),
    "results frame": (_results, "experiment_results"),  # one call per experiment: one here
    "lock": (_lock, "read_holder"),
}


def _counting(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counts: Counter[str] = Counter()

    def counted(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if name != "trials.jsonl" or Path(args[0]).name == "trials.jsonl":
                counts[name] += 1
            return function(*args, **kwargs)
        return call

    for name, (module, attribute) in COUNTED.items():
        monkeypatch.setattr(module, attribute, counted(name, getattr(module, attribute)))
    return counts


@pytest.mark.parametrize("command", [
    ["study", "status", "s", "--best"],
    ["study", "status", "s", "--best", "--json"],
    ["study", "list"],
])
def test_a_command_opens_a_study_on_a_store_once(
    command: list[str], s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.fs

    folder = _finished_study(tmp_path / "local")
    fs, base = pyarrow.fs.FileSystem.from_uri(s3_bucket)
    pyarrow.fs.copy_files(str(folder), f"{base}/s", destination_filesystem=fs)
    counts = _counting(monkeypatch)
    result = CliRunner().invoke(app, [*command, "--storage", s3_bucket])
    assert result.exit_code == 0, result.output
    assert "0.5" in result.output  # the trials' best dev overall: the study was read
    assert counts == dict.fromkeys(COUNTED, 1)
