"""Study storage on an object store (S3 on loopback, moto's server): the staging copy, the lock
as an object, lean checkpoints by deleting objects, and the refusals. The Ray runs are in
`test_store_study.py` and `test_two_nodes.py`."""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.fs
import pytest

from mtl_tune.exceptions import MtlTuneError, SpecError
from mtl_tune.studies import existing_study, is_store_uri, storage_root, uri_of
from mtl_tune.studies.store import StudyMeta, StudyStore, write_meta
from mtl_tune.studies.store import _lock as lock_module
from mtl_tune.studies.store import _object_store as object_store
from mtl_tune.studies.store import _store_pull as store_pull
from mtl_tune.studies.store._lean import drop_finished_optimizer_state
from mtl_tune.studies.store._lock import DriverLock, Holder, read_holder
from mtl_tune.studies.store._object_store import driver_root, is_staged
from mtl_tune.studies.store._storage import disk_usage, study_names
from mtl_tune.studies.store._store_pull import fetch_checkpoint, fetch_uri, pull, stored_bytes
from mtl_tune.studies.store._trial_log import append_event, read_trials
from tests.studies.conftest import stored_objects


def _store(uri: str) -> tuple[Any, str]:
    return pyarrow.fs.FileSystem.from_uri(uri)


def _put(uri: str, relative: str, data: bytes) -> None:
    fs, base = _store(uri)
    with fs.open_output_stream(f"{base}/{relative}") as stream:
        stream.write(data)


def _get(uri: str, relative: str) -> bytes:
    fs, base = _store(uri)
    with fs.open_input_stream(f"{base}/{relative}") as stream:
        return bytes(stream.read())


CHECKPOINT = "s1/tune/main/trial_a/checkpoint_000001"


def test_a_uri_names_a_store_and_a_path_does_not() -> None:
    # what --storage takes as an object store
    assert is_store_uri("s3://bucket/prefix") and is_store_uri("gs://b/p")
    # local folders, a file URI and a Windows-like drive are folders
    assert not any(is_store_uri(t) for t in ("/tmp/studies", "studies", "file:///tmp/x", "C:/x"))


def test_the_storage_variable_takes_a_uri_too(s3_bucket: str, monkeypatch: Any) -> None:
    monkeypatch.setenv("MTL_TUNE_STORAGE", s3_bucket + "/")
    root = storage_root(None)
    # $MTL_TUNE_STORAGE names the store as --storage would (a trailing slash is no other store)
    assert is_staged(root) and uri_of(root) == s3_bucket and root == storage_root(s3_bucket)


def test_a_uri_with_a_query_is_refused(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("MTL_TUNE_CACHE", str(tmp_path / "cache"))
    # study paths are built by appending to the URI: a query would end up inside them
    with pytest.raises(SpecError, match=r"without a query, but got 's3://b/p\?region=x': give "
                       r"the endpoint, region and credentials in the environment"):
        storage_root("s3://b/p?region=x")


def test_an_unknown_scheme_is_refused_with_the_uri(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("MTL_TUNE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SpecError, match=r"nosuch://bucket/x: nosuch:// is not a supported "
                       r"store; give a local path \(or file:///path\), or one of "
                       r"s3://bucket/prefix, gs://bucket/prefix"):
        storage_root("nosuch://bucket/x")
    # nothing was made for it
    assert not (tmp_path / "cache").exists()


def test_files_published_by_a_driver_are_pulled_by_a_reader(
    s3_bucket: str, monkeypatch: Any
) -> None:
    driver = driver_root(storage_root(s3_bucket))
    folder = driver / "s1"
    folder.mkdir()
    write_meta(folder, StudyMeta(name="s1"))
    append_event(folder, "main", "t1", "created", {"lr": 0.1})
    # Ray Tune writes trials to the store itself, naming them by their store paths
    trial = f"{s3_bucket.removeprefix('s3://')}/s1/tune/main/trial_a"
    append_event(folder, "main", "t1", "finished", {"lr": 0.1}, trial, f"{trial}/checkpoint_000001")
    for name, data in (("trainer_state.json", b"{}"), ("model.safetensors", b"w" * 1000),
                       ("optimizer.pt", b"o" * 2000)):
        _put(s3_bucket, f"{CHECKPOINT}/{name}", data)
    _put(s3_bucket, "s1/tune/main/trial_a/result.json", b'{"epoch": 1}\n')
    # Ray Tune's files that no reader opens (its other logs, its driver's resume files and
    # retention's copy of them), beside the saved state that a reader reconciles with
    tune_only = {"s1/tune/main/trial_a/progress.csv": b"epoch\n1\n",
                 "s1/tune/main/trial_a/params.pkl": b"p",
                 "s1/tune/main/trial_a/events.out.tfevents.1.host": b"e",
                 "s1/tune/main/tuner.pkl": b"t" * 500,
                 "s1/tune/main/searcher-state-2026.pkl": b"s" * 500,
                 "s1/tune/main/.mtl-tune-saved-state/abc/tuner.pkl": b"t" * 500,
                 "s1/tune/main/.mtl-tune-settled/t1": b""}
    for key, data in tune_only.items():
        _put(s3_bucket, key, data)
    _put(s3_bucket, "s1/tune/main/experiment_state-2026.json", b"{}")
    # each write went to the store as it was made
    assert {"s1/study.json", "s1/trials.jsonl.parts/000000"} <= set(stored_objects(s3_bucket))
    assert json.loads(_get(s3_bucket, "s1/study.json"))["name"] == "s1"

    reader = storage_root(s3_bucket)
    assert reader != driver and is_staged(reader) and uri_of(reader) == s3_bucket
    assert study_names(reader) == ["s1"]
    local = existing_study(reader, "s1")
    # the reader's copy holds the record, with the trial at its place in the copy
    (record,) = read_trials(local).values()
    assert record.state == "TERMINATED" and record.path == str(local / "tune/main/trial_a")
    assert record.checkpoint == str(local / CHECKPOINT.removeprefix("s1/"))
    assert (local / "tune/main/trial_a/result.json").read_text() == '{"epoch": 1}\n'
    assert (local / "tune/main/experiment_state-2026.json").read_text() == "{}"
    # Ray Tune's own files stay in the store: a reader of a large study downloads far less
    assert not any((local / key.removeprefix("s1/")).exists() for key in tune_only)
    # the checkpoint's small files are here, its weights and optimizer state are not (yet)
    checkpoint = Path(record.checkpoint)
    assert sorted(p.name for p in checkpoint.iterdir()) == ["trainer_state.json"]
    # disk usage counts what the store holds
    assert disk_usage(local) == stored_bytes(local) == len(_get(s3_bucket, "s1/study.json")) + len(
        _get(s3_bucket, "s1/trials.jsonl.parts/000000")) + 2 + 1000 + 2000 + 13 + 2 + sum(
        map(len, tune_only.values()))

    # loading a model fetches the weights, once (copies made right after the object's time are
    # checked again: made as if long after it here)
    monkeypatch.setattr(store_pull, "SAME_SECOND_NS", 0)
    assert fetch_checkpoint(checkpoint) == checkpoint
    weights = checkpoint / "model.safetensors"
    assert weights.read_bytes() == b"w" * 1000 and not (checkpoint / "optimizer.pt").exists()
    inode = weights.stat().st_ino
    fetch_checkpoint(checkpoint)
    # the second load finds them: the file was not downloaded (replaced) again
    assert weights.stat().st_ino == inode

    # a file changed in the store is downloaded again; one deleted there is deleted here
    _put(s3_bucket, "s1/tune/main/trial_a/result.json", b'{"epoch": 1}\n{"epoch": 2}\n')
    fs, base = _store(s3_bucket)
    fs.delete_dir(f"{base}/{CHECKPOINT}")
    pull(local)
    assert (local / "tune/main/trial_a/result.json").read_text().count("epoch") == 2
    assert not checkpoint.exists()


def test_a_checkpoint_uri_is_downloaded_once_without_its_optimizer_state(s3_bucket: str) -> None:
    for name, data in (("trainer_state.json", b"{}"), ("model.safetensors", b"w" * 10),
                       ("optimizer.pt", b"o" * 20)):
        _put(s3_bucket, f"{CHECKPOINT}/{name}", data)
    folder = fetch_uri(f"{s3_bucket}/{CHECKPOINT}/")
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "trainer_state.json"]
    # the same URI is the same cache folder
    assert fetch_uri(f"{s3_bucket}/{CHECKPOINT}") == folder
    with pytest.raises(MtlTuneError, match=r"no checkpoint at s3://.*/nothing: the store holds"):
        fetch_uri(f"{s3_bucket}/nothing")


def test_the_lock_is_an_object_with_a_heartbeat(s3_bucket: str, monkeypatch: Any) -> None:
    monkeypatch.setattr(lock_module, "SETTLE_SECONDS", 0.0)
    folder = driver_root(storage_root(s3_bucket)) / "s1"
    folder.mkdir()
    with DriverLock(folder, "s1") as held:
        # the lock lives in the store, not in the staging folder
        assert "s1/driver.json" in stored_objects(s3_bucket)
        assert not (folder / "driver.json").exists()
        holder = read_holder(folder)
        assert holder == held.holder and holder is not None and holder.pid == os.getpid()
        # a second driver is refused while the first lives, with who holds it
        with pytest.raises(SpecError, match=rf"being run by another driver \(pid {os.getpid()} on"):
            DriverLock(folder, "s1").__enter__()
    # released at the end
    assert "s1/driver.json" not in stored_objects(s3_bucket)

    # a driver on another host whose heartbeat stopped over two minutes ago is taken over
    stale = Holder(pid=1, host="elsewhere", started=0.0, heartbeat=time.time() - 121)
    _put(s3_bucket, "s1/driver.json", json.dumps(stale.__dict__).encode())
    with DriverLock(folder, "s1"):
        now = read_holder(folder)
        assert now is not None and now.host == socket.gethostname()
    # one whose heartbeat is recent is not
    fresh = Holder(pid=1, host="elsewhere", started=0.0, heartbeat=time.time() - 60)
    _put(s3_bucket, "s1/driver.json", json.dumps(fresh.__dict__).encode())
    with pytest.raises(SpecError, match=r"pid 1 on elsewhere"):
        DriverLock(folder, "s1").__enter__()


def test_finished_trials_lose_their_optimizer_objects(s3_bucket: str) -> None:
    for trial in ("done", "failed"):
        for step in (0, 1):
            _put(s3_bucket, f"t/{trial}/checkpoint_00000{step}/model.safetensors", b"w" * 10)
            _put(s3_bucket, f"t/{trial}/checkpoint_00000{step}/optimizer.pt", b"o" * 100)
    fs, base = _store(s3_bucket)
    results = [SimpleNamespace(path=f"{base}/t/done", error=None, filesystem=fs,
                               metrics={"trial_id": "done"}),
               SimpleNamespace(path=f"{base}/t/failed", error=RuntimeError(), filesystem=fs,
                               metrics={"trial_id": "failed"})]
    # the finished trial's two optimizer objects are deleted, 200 bytes
    assert drop_finished_optimizer_state(results, {"done", "failed"}) == 200
    left = set(stored_objects(s3_bucket))
    assert not any(p.startswith("t/done/") and p.endswith("optimizer.pt") for p in left)
    # its weights stay; the errored trial (which may resume) keeps everything
    assert sum(p.startswith("t/done/") for p in left) == 2
    assert sum(p.startswith("t/failed/") for p in left) == 4


def test_a_store_study_needs_an_optuna_storage(s3_bucket: str, tmp_path: Path) -> None:
    from mtl_tune.studies import launch_study
    from mtl_tune.studies.spec import load_spec

    spec_file = tmp_path / "s.toml"
    spec_file.write_text('name = "s1"\ntrainables = ["it1-baseline"]\n')
    spec = load_spec(str(spec_file))
    with pytest.raises(SpecError, match=r"a study on an object store \(s3://.*/studies\) needs "
                       r"--optuna-storage: .*postgresql://.*or a journal file path"):
        launch_study(spec, storage_root(s3_bucket), spec_file.read_text())
    # nothing was written to the store
    assert set(stored_objects(s3_bucket)) == set()
    # a study of that name in the store is not launched over
    _put(s3_bucket, "s1/study.json", b"{}")
    with pytest.raises(SpecError, match=r"study 's1' already exists in s3://.*/studies: resume"):
        launch_study(spec, storage_root(s3_bucket), "", optuna_storage="sqlite:///x.db")


def test_a_missing_study_names_the_stored_ones(s3_bucket: str) -> None:
    _put(s3_bucket, "a/study.json", b"{}")
    _put(s3_bucket, "not-a-study/file.txt", b"x")
    with pytest.raises(SpecError, match=r"no study 'b' in s3://.*/studies; studies there: \['a'\]"):
        existing_study(storage_root(s3_bucket), "b")


def test_a_rewrite_in_the_same_second_of_the_same_size_is_pulled(s3_bucket: str) -> None:
    folder = storage_root(s3_bucket) / "s1"
    for _ in range(5):  # until both writes land in one second of the store's clock
        _put(s3_bucket, "s1/study.json", b'{"wall": 1}')
        first = stored_objects(s3_bucket)["s1/study.json"].mtime
        pull(folder)
        _put(s3_bucket, "s1/study.json", b'{"wall": 2}')
        if stored_objects(s3_bucket)["s1/study.json"].mtime == first:
            break
    # same size, same time to the second: only the age of the copy tells them apart
    assert stored_objects(s3_bucket)["s1/study.json"].mtime == first
    pull(folder)
    assert (folder / "study.json").read_bytes() == b'{"wall": 2}'


def test_a_missing_bucket_is_refused_before_anything_is_made(
    s3_endpoint: str, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("MTL_TUNE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SpecError, match=r"the bucket 'no-such-bucket' of --storage "
                       r"s3://no-such-bucket/x does not exist .*`aws s3 mb s3://no-such-bucket`"):
        storage_root("s3://no-such-bucket/x")
    assert not (tmp_path / "cache").exists()


def test_a_folder_is_published_with_its_marker_last(tmp_path: Path, monkeypatch: Any) -> None:
    written: list[str] = []

    class Recorder:  # a store that records the order of its writes
        def open_output_stream(self, name: str) -> Any:
            written.append(name)
            return io.BytesIO()

    monkeypatch.setattr(object_store, "_open", lambda uri: (Recorder(), "bucket/studies"))
    root = tmp_path / "stage"
    root.mkdir()
    (root / object_store.MARKER).write_text(json.dumps({"uri": "s3://bucket/studies"}))
    entry = root / "s1" / "cache" / "k"
    entry.mkdir(parents=True)
    for name in ("a.csv", "entry.json", "z.csv"):
        (entry / name).write_text(name)
    object_store.publish(entry, last="entry.json")
    # a reader that finds the marker finds the files it names: the marker goes up last
    assert written == [f"bucket/studies/s1/cache/k/{n}" for n in ("a.csv", "z.csv", "entry.json")]


def test_two_drivers_starting_together_one_stops(s3_bucket: str, monkeypatch: Any) -> None:
    folder = driver_root(storage_root(s3_bucket)) / "s1"
    folder.mkdir()
    other = Holder(pid=1, host="elsewhere", started=0.0, heartbeat=time.time())

    class Clock:
        """The lock module's `time`: its settling sleep is when the other driver writes (only
        the lock's: moto's threads and everyone else sleep as before)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        def sleep(self, seconds: float) -> None:
            _put(s3_bucket, "s1/driver.json", json.dumps(other.__dict__).encode())

    monkeypatch.setattr(lock_module, "time", Clock())
    # the store kept the other driver's lock: this one stops, naming it
    with pytest.raises(SpecError, match=r"taken by another driver starting at the same time "
                       r"\(pid 1 on elsewhere"):
        DriverLock(folder, "s1").__enter__()
    assert read_holder(folder) == other


def test_a_driver_refreshes_its_heartbeat_in_the_store(s3_bucket: str, monkeypatch: Any) -> None:
    monkeypatch.setattr(lock_module, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(lock_module, "HEARTBEAT_SECONDS", 0.05)
    folder = driver_root(storage_root(s3_bucket)) / "s1"
    folder.mkdir()
    with DriverLock(folder, "s1") as held:
        deadline = time.monotonic() + 10
        while (now := read_holder(folder)) is None or now.heartbeat == held.holder.heartbeat:
            assert time.monotonic() < deadline, "no heartbeat reached the store"
            time.sleep(0.05)
    # the lock object's heartbeat moved on, the rest stayed the driver's
    assert now.heartbeat > held.holder.heartbeat and now.pid == held.holder.pid


def test_a_pull_keeps_cache_entries_being_written_here(s3_bucket: str) -> None:
    _put(s3_bucket, "s1/study.json", b"{}")
    root = storage_root(s3_bucket)
    writing = root / "s1" / "cache" / "test-scores" / ".k.partial-1" / "entry.json"
    writing.parent.mkdir(parents=True)
    writing.write_text("{}")
    stale = root / "s1" / "tune" / "main" / "gone.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # a study file the store no longer has
    existing_study(root, "s1")
    # another report of this machine writes that entry, to upload it when whole: kept ...
    assert writing.is_file()
    # ... while the pull does remove what the store no longer has
    assert not stale.exists()


def test_every_study_store_write_reaches_the_store_and_a_removal_clears_it(
    s3_bucket: str,
) -> None:
    folder = driver_root(storage_root(s3_bucket)) / "s2"
    folder.mkdir()
    store = StudyStore.at(folder)
    assert store.on_store and store.uri == f"{s3_bucket}/s2"
    store.write_text("spec.toml", "name = 's2'\n")
    store.append_lines("trials.jsonl", ['{"a": 1}'])
    store.append_lines("trials.jsonl", ['{"a": 2}'])
    assert _get(s3_bucket, "s2/spec.toml") == b"name = 's2'\n"
    assert _get(s3_bucket, "s2/trials.jsonl.parts/000000") == b'{"a": 1}\n{"a": 2}\n'  # `_parts`
    # the lock's way: the object as the store holds it, never the staging copy
    store.write_current("driver.json", '{"pid": 1}')
    assert store.read_current("driver.json") == '{"pid": 1}'
    assert not (folder / "driver.json").exists()
    store.delete_current("driver.json")
    with pytest.raises(FileNotFoundError):
        store.read_current("driver.json")
    # a create when there is no object writes it, and only then
    assert store.create_new("driver.json", '{"pid": 2}')
    assert not store.create_new("driver.json", '{"pid": 3}')
    assert _get(s3_bucket, "s2/driver.json") == b'{"pid": 2}'
    store.delete_current("driver.json")
    assert store.has_files() and not store.has_files("tune")
    store.remove()
    assert not folder.exists() and not any(k.startswith("s2/") for k in stored_objects(s3_bucket))


def test_a_study_store_on_a_disk_writes_whole_files_in_place(
    tmp_path: Path, monkeypatch: Any
) -> None:
    store = StudyStore.at(tmp_path / "s")
    (tmp_path / "s").mkdir()
    assert not store.on_store and store.uri == str(tmp_path / "s") and not store.has_files()
    store.write_text("study.json", "{}")
    store.append_lines("trials.jsonl", ["x"])
    assert (tmp_path / "s" / "trials.jsonl").read_text() == "x\n" and store.has_files()
    # an exclusive create: the first caller writes, a second finds the file and leaves it
    assert store.create_new("driver.json", "1") and not store.create_new("driver.json", "2")
    assert store.read_current("driver.json") == "1"
    store.delete_current("driver.json")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["study.json", "trials.jsonl"]

    def full_disk(source: Any, target: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)  # the rename into place fails
    with pytest.raises(MtlTuneError, match=r"no space left on the device holding .* while "
                                           r"writing study.json.*the previous version is kept"):
        store.write_text("study.json", '{"name": "new"}')
    assert (tmp_path / "s" / "study.json").read_text() == "{}"
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["study.json", "trials.jsonl"]
