"""Reading a study never changes it: `study status`, `study list` and `report search` (its report
written elsewhere, with --out) leave every byte of the study as it was, on a disk and on an object
store (S3 on loopback, moto's server). Reconciling the trial record is a driver's job."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from tests.reports.conftest import copy_study

pytestmark = pytest.mark.process  # evaluates with the tiny model; the store case starts moto


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Relative path -> (bytes, modification time in ns) of every file under `folder`."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _objects(uri: str) -> dict[str, tuple[bytes, int]]:
    """Relative path -> (bytes, modification time in ns) of every object under `uri`."""
    import pyarrow.fs

    fs, base = pyarrow.fs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=True))
    found = {}
    for info in infos:
        if info.type == pyarrow.fs.FileType.File:
            with fs.open_input_stream(info.path) as stream:
                found[info.path[len(base) + 1:]] = (bytes(stream.read()), info.mtime_ns)
    return found


def _read_every_way(storage: str, out: Path) -> None:
    for command in (["study", "status", "search", "--json"], ["study", "list"],
                    ["report", "search", "search", "--out", str(out), "--format", "csv"]):
        result = CliRunner().invoke(app, [*command, "--storage", storage])
        assert result.exit_code == 0, result.output


def _torn_record(search_study: Path, dest: Path) -> Path:
    """A copy of the search study whose trial record lost its last line to a kill mid-write:
    a record that a driver rewrites from Tune's saved state."""
    folder = copy_study(search_study, dest)
    record = folder / "trials.jsonl"
    record.write_text("".join(record.read_text().splitlines(keepends=True)[:-1]) + '{"trial')
    return folder


def test_reading_a_study_on_a_disk_changes_none_of_its_bytes(
    search_study: Path, tmp_path: Path
) -> None:
    folder = copy_study(search_study, tmp_path / "studies" / "search")
    # launched before mtl-tune kept a record: a driver writes one from Tune's saved state
    (folder / "trials.jsonl").unlink()
    before = _files(folder)
    _read_every_way(str(folder.parent), tmp_path / "report")
    assert _files(folder) == before
    # the report was written, where --out said
    assert (tmp_path / "report" / "top.csv").is_file()


def test_reading_a_study_on_an_object_store_changes_none_of_its_objects(
    search_study: Path, tmp_path: Path, s3_bucket: str
) -> None:
    import pyarrow.fs

    folder = _torn_record(search_study, tmp_path / "local" / "search")
    fs, base = pyarrow.fs.FileSystem.from_uri(s3_bucket)
    pyarrow.fs.copy_files(str(folder), f"{base}/search", destination_filesystem=fs)
    before = _objects(s3_bucket)
    assert {"search/trials.jsonl", "search/optuna.db"} <= set(before)
    _read_every_way(s3_bucket, tmp_path / "report")
    assert _objects(s3_bucket) == before
    assert (tmp_path / "report" / "top.csv").is_file()
