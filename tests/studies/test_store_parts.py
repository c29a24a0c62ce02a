"""Appended study files on an object store (moto's S3 on loopback): an append uploads its last
part alone, so the bytes per event stay flat as the record grows, and every reader reads the
record whole, a study written before parts existed included."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs
import pytest

from mtl_tune.studies import existing_study, storage_root
from mtl_tune.studies.store import StudyMeta, StudyStore, write_meta
from mtl_tune.studies.store import _object_store as object_store
from mtl_tune.studies.store import _parts as parts
from mtl_tune.studies.store._object_store import driver_root
from mtl_tune.studies.store._study_store import driver_copy
from mtl_tune.studies.store._trial_log import append_event, read_trials
from tests.studies.conftest import stored_objects

PART_BYTES = 1000


def _put(uri: str, relative: str, data: bytes) -> None:
    fs, base = pyarrow.fs.FileSystem.from_uri(uri)
    with fs.open_output_stream(f"{base}/{relative}") as stream:
        stream.write(data)


def _uploads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(file name, bytes) of each file uploaded from now on."""
    sent: list[tuple[str, int]] = []
    publish = object_store.publish

    def counted(path: Path, last: str | None = None) -> None:
        sent.extend((p.name, p.stat().st_size) for p in
                    ([path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]))
        publish(path, last)

    monkeypatch.setattr(object_store, "publish", counted)
    return sent


def _driver_study(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A study in a driver's staging copy of the store, its parts PART_BYTES long."""
    monkeypatch.setattr(parts, "PART_BYTES", PART_BYTES)
    folder = driver_root(storage_root(s3_bucket)) / "s1"
    folder.mkdir()
    write_meta(folder, StudyMeta(name="s1"))
    return folder


def _events(folder: Path, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        append_event(folder, "main", f"t{i:03d}", "created", {"lr": 1e-4, "note": "x" * 60})


def test_an_append_uploads_its_last_part_alone(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _driver_study(s3_bucket, monkeypatch)
    sent = _uploads(monkeypatch)
    _events(folder, 100)
    record = (folder / "trials.jsonl").read_bytes()
    line = max(len(x) for x in record.splitlines(keepends=True))
    assert len(record) > 10 * PART_BYTES
    # each append sent one part, never more than a part and its new line: flat as it grew
    assert len(sent) == 100 and max(size for _, size in sent) <= PART_BYTES + line
    stored = {k: i.size for k, i in stored_objects(s3_bucket).items()
              if k.startswith("s1/trials")}
    names = sorted(stored)
    assert names[0] == "s1/trials.jsonl.parts/000000" and "s1/trials.jsonl" not in stored
    # every part but the last closed once full
    assert all(PART_BYTES <= stored[n] <= PART_BYTES + line for n in names[:-1])
    assert sum(stored.values()) == len(record)

    # a reader reads the record whole, byte for byte, and each pull brings only what changed
    reader = existing_study(storage_root(s3_bucket), "s1")
    assert (reader / "trials.jsonl").read_bytes() == record
    assert [t.trial_id for t in read_trials(reader).values()] == [f"t{i:03d}" for i in range(100)]
    _events(folder, 3, start=100)
    reader = existing_study(storage_root(s3_bucket), "s1")
    assert (reader / "trials.jsonl").read_bytes() == (folder / "trials.jsonl").read_bytes()
    assert len(read_trials(reader)) == 103


def test_a_record_from_before_parts_is_the_base_its_parts_follow(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = "".join(json.dumps({"experiment": "main", "trial_id": t, "event": "created",
                              "config": {}}) + "\n" for t in ("a", "b"))
    _put(s3_bucket, "s1/study.json", b'{"name": "s1"}')
    _put(s3_bucket, "s1/trials.jsonl", old.encode())
    # a resumed driver appends after the old record, which it leaves as it was, and at its end
    # uploads its parts once more (never its download of the old record)
    for trial, event in (("a", "finished"), ("c", "created")):  # two drivers, one after the other
        with driver_copy(storage_root(s3_bucket), "s1", "trials.jsonl") as root:
            driver = existing_study(root, "s1")
            append_event(driver, "main", trial, event, {})
            local = (driver / "trials.jsonl").read_bytes()
    stored = stored_objects(s3_bucket)
    assert sorted(k for k in stored if k.startswith("s1/trials")) == [
        "s1/trials.jsonl", "s1/trials.jsonl.parts/000000"]
    assert stored["s1/trials.jsonl"].size == len(old)
    reader = existing_study(storage_root(s3_bucket), "s1")
    trials = read_trials(reader)
    assert [(t.trial_id, t.state) for t in trials.values()] == [
        ("a", "TERMINATED"), ("b", "PENDING"), ("c", "PENDING")]
    assert (reader / "trials.jsonl").read_bytes() == local
    # the base is kept beside the parts, not under the record's own name, and no pull drops it
    assert (reader / "trials.jsonl.parts" / "base").read_text() == old
    reader = existing_study(storage_root(s3_bucket), "s1")
    assert len(read_trials(reader)) == 3


def test_a_record_rewritten_whole_replaces_its_parts(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _driver_study(s3_bucket, monkeypatch)
    _events(folder, 30)
    kept = "".join((folder / "trials.jsonl").read_text().splitlines(keepends=True)[:5])
    StudyStore.at(folder).write_text("trials.jsonl", kept)
    stored = [k for k in stored_objects(s3_bucket) if k.startswith("s1/trials")]
    assert stored == ["s1/trials.jsonl"] and not (folder / "trials.jsonl.parts").exists()
    reader = existing_study(storage_root(s3_bucket), "s1")
    assert (reader / "trials.jsonl").read_text() == kept
    # appends after it start new parts again, read after the rewritten base
    _events(folder, 2, start=30)
    reader = existing_study(storage_root(s3_bucket), "s1")
    assert len(read_trials(reader)) == 7


def test_disk_appends_stay_in_the_file_itself(tmp_path: Path) -> None:
    _events(tmp_path, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["trials.jsonl"]
    assert len(read_trials(tmp_path)) == 3


def test_an_append_lists_the_parts_once_however_many_there_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # listing the parts at each append cost as much more as the file had parts (1.4 ms of CPU
    # an append at 200 parts, at 1,000 trials three appends an event)
    monkeypatch.setattr(parts, "PART_BYTES", 100)
    listed: list[Path] = []
    numbered = parts._numbered
    monkeypatch.setattr(parts, "_numbered", lambda folder: listed.append(folder)
                        or numbered(folder))
    path = tmp_path / "trials.jsonl"
    for i in range(300):
        parts.append_part(path, f'{{"event": {i}}}\n'.encode())
    assert len(listed) == 1
    written = parts.part_files(path)
    assert len(written) > 40
    assert b"".join(p.read_bytes() for p in written).decode().splitlines() == [
        f'{{"event": {i}}}' for i in range(300)]
    # a part another writer added after the last one is appended to, and a file rewritten
    # whole (its parts gone) starts again at part 0
    newer = parts.parts_dir(path) / f"{len(written):06d}"
    newer.write_bytes(b'{"event": "theirs"}\n')
    assert parts.append_part(path, b'{"event": "mine"}\n') == newer
    for part in parts.part_files(path):
        part.unlink()
    assert parts.append_part(path, b'{"event": 0}\n').name == "000000"
