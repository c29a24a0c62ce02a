"""What Ray Tune sends to an object store for a study: counted by a proxy in front of moto."""

from __future__ import annotations

import copy
import importlib.util
import json
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs
import pytest

from mtl_tune.studies import storage_root
from mtl_tune.studies.store import _object_store as object_store
from mtl_tune.studies.store import tune_storage
from mtl_tune.studies.store._object_store import driver_root
from mtl_tune.studies.store._saved_state import snapshot
from mtl_tune.studies.store._unchanged_uploads import UnchangedSkipping
from tests.conftest import REPO
from tests.studies.conftest import stored_objects


@pytest.fixture
def proxy(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Every S3 request of this process goes through benchmarks/_counting_proxy.py."""
    spec = importlib.util.spec_from_file_location(
        "_counting_proxy", REPO / "benchmarks" / "_counting_proxy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    counting = module.CountingProxy(s3_endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", counting.endpoint)
    object_store._open.cache_clear()  # file systems opened at the moto server's own address
    try:
        yield counting
    finally:
        counting.stop()
        object_store._open.cache_clear()


def test_tune_uploads_each_file_of_a_study_in_one_request(
    s3_bucket: str, proxy: Any, tmp_path: Path
) -> None:
    # Ray Tune uploads its driver's folder (every trial's logs and its saved state, at each
    # save) and each checkpoint with pyarrow's copy_files through the file system it is given
    staging = tmp_path / "driver_artifacts"
    (staging / "trial_a").mkdir(parents=True)
    (staging / "experiment_state-1.json").write_text("{}")
    (staging / "trial_a" / "result.json").write_text('{"epoch": 1}\n')
    (staging / "trial_a" / "progress.csv").write_text("epoch\n1\n")
    path, fs = tune_storage(driver_root(storage_root(s3_bucket)) / "s1" / "tune" / "main")
    assert path == f"{s3_bucket.removeprefix('s3://')}/s1/tune/main"
    before = dict(proxy.calls)
    pyarrow.fs.copy_files(str(staging), path, destination_filesystem=fs, use_threads=False)
    sent = {k: n - before.get(k, 0) for k, n in proxy.calls.items() if n != before.get(k, 0)}
    # one PutObject per file: no multipart upload (a POST to start it, a PUT of its one part,
    # a POST to complete it: three requests per small file, what Tune's own S3 client sends)
    assert not [k for k in sent if k.startswith("POST")], sent
    assert sum(n for k, n in sent.items() if k.startswith("PUT") and not k.endswith("/")) == 3
    stored = stored_objects(f"{s3_bucket}/s1/tune/main")
    assert {k: v.size for k, v in stored.items()} == {
        "experiment_state-1.json": 2, "trial_a/result.json": 13, "trial_a/progress.csv": 8}


def _puts(proxy: Any, before: dict[str, int]) -> dict[str, int]:
    """The PUT requests sent since `before`: object key -> how many."""
    return {k: n - before.get(k, 0) for k, n in proxy.calls.items()
            if k.startswith("PUT") and n != before.get(k, 0)}


def test_tunes_driver_does_not_send_again_a_file_it_sent_unchanged(
    s3_bucket: str, proxy: Any, tmp_path: Path
) -> None:
    # Tune uploads its driver's whole folder at every save: an ended trial's logs each time
    staging = tmp_path / "driver_artifacts"
    for trial in ("trial_a", "trial_b"):
        (staging / trial).mkdir(parents=True)
        (staging / trial / "result.json").write_text('{"epoch": 1}\n')
    (staging / "experiment_state-1.json").write_text('{"saved": 1}')
    path, fs = tune_storage(driver_root(storage_root(s3_bucket)) / "s1" / "tune" / "main")
    pyarrow.fs.copy_files(str(staging), path, destination_filesystem=fs)
    fs = copy.deepcopy(fs)  # as Tune hands its storage context to its syncer
    (staging / "trial_b" / "result.json").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    (staging / "experiment_state-1.json").write_text('{"saved": 2}')
    before = dict(proxy.calls)
    pyarrow.fs.copy_files(str(staging), path, destination_filesystem=fs)
    # the next save sends what changed, and neither trial_a's log nor a directory marker
    sent = _puts(proxy, before)
    assert sum(sent.values()) == 2 and not [k for k in sent if "trial_a" in k], sent
    stored = stored_objects(f"{s3_bucket}/s1/tune/main")
    assert {k: v.size for k, v in stored.items() if not k.endswith("/")} == {
        "experiment_state-1.json": 12, "trial_a/result.json": 13, "trial_b/result.json": 26}
    # a file deleted through it is sent again, even with the bytes it had
    fs.delete_file(f"{path}/trial_a/result.json")
    before = dict(proxy.calls)
    pyarrow.fs.copy_files(str(staging), path, destination_filesystem=fs)
    assert sum(_puts(proxy, before).values()) == 1
    assert "trial_a/result.json" in stored_objects(f"{s3_bucket}/s1/tune/main")


def test_tunes_trials_get_a_client_that_sends_every_file(
    s3_bucket: str, proxy: Any, tmp_path: Path
) -> None:
    # pickled into Tune's trials (whose workers upload checkpoints) and into tuner.pkl, the
    # client holds no checkpoint's bytes and sends each file; it makes each folder's parents once
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"w" * 5000)
    path, fs = tune_storage(driver_root(storage_root(s3_bucket)) / "s1" / "tune" / "main")
    worker_fs = pickle.loads(pickle.dumps(fs))
    markers = []
    for epoch in (1, 2, 2):
        before = dict(proxy.calls)
        folder = f"{path}/trial_a/checkpoint_00000{epoch}"
        worker_fs.create_dir(folder, recursive=True)  # as Tune's _upload_to_fs_path does
        pyarrow.fs.copy_files(str(checkpoint), folder, destination_filesystem=worker_fs)
        sent = _puts(proxy, before)
        assert [n for k, n in sent.items() if k.endswith("safetensors")] == [1]
        markers.append(sum(n for k, n in sent.items() if k.endswith("/")))
    # the first folder: a marker for each of its 6 levels; the next: its own; the same: none
    assert markers == [6, 1, 0]
    assert worker_fs == fs
    stored = stored_objects(f"{s3_bucket}/s1/tune/main")
    assert {f"trial_a/checkpoint_00000{e}/model.safetensors" for e in (1, 2)} <= set(stored)


def _state(checkpoint: str, **config: Any) -> str:
    trial = {"trial_id": "t1", "status": "RUNNING", "config": config}
    metadata = {"last_result": {"checkpoint_dir_name": checkpoint}}
    return json.dumps({"trial_data": [[json.dumps(trial), json.dumps(metadata)]]})


def test_retention_reads_the_saved_state_the_driver_sent_without_downloading_it(
    s3_bucket: str, proxy: Any, tmp_path: Path
) -> None:
    staging = tmp_path / "driver_artifacts"
    staging.mkdir()
    (staging / "experiment_state-1.json").write_text(_state("checkpoint_000002"))
    (staging / "tuner.pkl").write_bytes(b"tuner")
    path, fs = tune_storage(driver_root(storage_root(s3_bucket)) / "s1" / "tune" / "main")
    pyarrow.fs.copy_files(str(staging), path, destination_filesystem=fs)
    before = dict(proxy.calls)
    saved = snapshot(copy.deepcopy(fs), path)  # through a trial's copy, as retention does
    assert saved is not None and saved["t1"].checkpoint == "checkpoint_000002"
    # the store copied the state into the set, and nothing of it came back to the driver
    assert not [k for k, n in proxy.calls.items()
                if k.startswith("GET") and "experiment_state" in k and n != before.get(k, 0)]
    # a state written there by another client (not this driver) is read from the store
    other = pyarrow.fs.PyFileSystem(UnchangedSkipping(fs.handler.fs))
    with other.open_output_stream(f"{path}/experiment_state-1.json") as out:
        out.write(_state("checkpoint_000013", lr=1e-4).encode())
    saved = snapshot(fs, path)
    assert saved is not None and saved["t1"].checkpoint == "checkpoint_000013"


UPLOADS = """
import os, resource, sys
from pathlib import Path
from ray.train._internal.storage import _upload_to_fs_path
from mtl_tune.studies import storage_root
from mtl_tune.studies.store import tune_storage
from mtl_tune.studies.store._object_store import driver_root

staging, uri = Path(sys.argv[1]), sys.argv[2]
path, fs = tune_storage(driver_root(storage_root(uri)) / "s1" / "tune" / "main")
for _ in range(6):
    (staging / "experiment_state-1.json").write_bytes(os.urandom(16) * 1_000_000)
    _upload_to_fs_path(str(staging), fs, path)  # as Tune's syncer uploads its driver's folder
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, flush=True)
"""


def test_tunes_uploads_keep_no_memory_per_file(s3_bucket: str, tmp_path: Path) -> None:
    # Tune uploads its driver's whole folder at every save: a driver process uploading 150
    # trials' logs and a saved state of 16 MB six times ends with the memory it had after the
    # first time (with pyarrow's background writes, each file uploaded kept memory: 438 ->
    # 1,216 MiB over four uploads; with Tune's copies on pyarrow's eight IO threads, each
    # thread's copy buffer did: +129 MiB over eight uploads of 1,000 trials)
    staging = tmp_path / "driver_artifacts"
    for i in range(150):
        (staging / f"trial_{i}").mkdir(parents=True)
        for name in ("result.json", "progress.csv", "params.json"):
            (staging / f"trial_{i}" / name).write_text("x" * 3000)
    run = subprocess.run([sys.executable, "-c", UPLOADS, str(staging), s3_bucket],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    peaks = [int(line) for line in run.stdout.split()]
    assert len(peaks) == 6 and peaks[-1] - peaks[0] < 20, peaks  # MiB
    assert len(stored_objects(f"{s3_bucket}/s1/tune/main")) == 451


def test_tune_is_given_a_local_folder_as_a_path(tmp_path: Path) -> None:
    # Tune opens a local folder itself
    assert tune_storage(tmp_path / "s1" / "tune") == (str(tmp_path / "s1" / "tune"), None)


def test_the_driver_knows_the_files_at_the_top_of_a_folder_without_listing_it_again(
    tmp_path: Path,
) -> None:
    # the names of the files of a folder, listed once, then kept by what the client writes,
    # copies, moves and deletes there: they match a listing after each
    top = tmp_path / "experiment"
    (top / "trial_a").mkdir(parents=True)
    (top / "tuner.pkl").write_bytes(b"tuner")
    handler = UnchangedSkipping(pyarrow.fs.LocalFileSystem())
    fs = pyarrow.fs.PyFileSystem(handler)
    folder = str(top)

    def listed() -> set[str]:
        return {p.name for p in top.iterdir() if p.is_file()}

    assert handler.file_names(folder) == listed() == {"tuner.pkl"}
    (top / "made-by-another.txt").write_text("unseen")  # not this client's: not known
    assert handler.file_names(folder) == {"tuner.pkl"}
    (top / "made-by-another.txt").unlink()
    steps = [
        lambda: fs.open_output_stream(f"{folder}/experiment_state-1.json").close(),
        lambda: fs.copy_file(f"{folder}/tuner.pkl", f"{folder}/tuner.pkl.copy"),
        lambda: fs.move(f"{folder}/tuner.pkl.copy", f"{folder}/searcher-state.pkl"),
        lambda: fs.delete_file(f"{folder}/tuner.pkl"),
        lambda: fs.move(f"{folder}/trial_a", f"{folder}/trial_b"),  # a folder: no file name
        lambda: fs.open_append_stream(f"{folder}/log.txt").close(),
        lambda: fs.open_output_stream(f"{folder}/trial_b/result.json").close(),  # below it
    ]
    for step in steps:
        step()
        assert handler.file_names(folder) == listed()
    assert listed() == {"experiment_state-1.json", "searcher-state.pkl", "log.txt"}
    fs.delete_dir_contents(folder)  # forgotten, then listed again
    (top / "made-by-another.txt").write_text("seen now")
    assert handler.file_names(folder) == {"made-by-another.txt"}
    # a trial's copy of the client keeps no names (it makes no retention pass)
    assert pickle.loads(pickle.dumps(fs)).handler.file_names(folder) is None


def test_a_retention_pass_on_a_store_asks_tunes_files_by_name(
    s3_bucket: str, proxy: Any, tmp_path: Path
) -> None:
    # on a store, a listing of the experiment's folder returns every trial's folder (1,000 at
    # 1,000 trials) to find Tune's few files; a pass (its stamp, then the copy) lists it never
    # after the driver's first look
    from mtl_tune.studies.store._saved_state import state_stamp

    staging = tmp_path / "driver_artifacts"
    for i in range(30):
        (staging / f"trial_{i}").mkdir(parents=True)
        (staging / f"trial_{i}" / "result.json").write_text("{}\n")
    (staging / "tuner.pkl").write_bytes(b"tuner")
    path, fs = tune_storage(driver_root(storage_root(s3_bucket)) / "s1" / "tune" / "main")
    experiment_prefix = f"{path.partition('/')[2]}/"
    stamps, passes = [], []
    for n, checkpoint in enumerate(("checkpoint_000001", "checkpoint_000002", "checkpoint_000003")):
        # (a store's times are in seconds: each state of another size, as Tune's grow)
        (staging / "experiment_state-1.json").write_text(_state(checkpoint, note="x" * n))
        pyarrow.fs.copy_files(str(staging), path, destination_filesystem=fs)
        before = proxy.listings[experiment_prefix]
        stamp = state_stamp(fs, path)
        saved = snapshot(fs, path, stamp)
        assert saved is not None and saved["t1"].checkpoint == checkpoint
        stamps.append(stamp)
        passes.append(proxy.listings[experiment_prefix] - before)
    assert len(set(stamps)) == 3  # each save seen
    assert passes == [1, 0, 0]
    # the pass's copy holds Tune's files, as a listing finds them
    kept = stored_objects(f"{s3_bucket}/s1/tune/main")
    assert {k.rpartition("/")[2] for k in kept if k.startswith(".mtl-tune-saved-state/")
            and "/" in k.removeprefix(".mtl-tune-saved-state/")} == {
        "experiment_state-1.json", "tuner.pkl"}


class _OneIOThread:
    """A store client whose listings and uploads wait, as pyarrow's S3 client does, on its one
    IO thread, which meanwhile runs a call of the handler (Tune's upload making a folder)."""

    handler: UnchangedSkipping

    def _on_the_io_thread(self) -> None:
        io = threading.Thread(target=self.handler.create_dir, args=("b/e/trial/ck", True))
        io.start()
        io.join(timeout=10)
        assert not io.is_alive(), "the IO thread waits for the handler's lock: a deadlock"

    def get_file_info(self, what: Any) -> list[Any]:
        if isinstance(what, pyarrow.fs.FileSelector):
            self._on_the_io_thread()
            return [pyarrow.fs.FileInfo("b/e/tuner.pkl", pyarrow.fs.FileType.File, size=5)]
        return [pyarrow.fs.FileInfo(p, pyarrow.fs.FileType.File, size=5) for p in what]

    def open_output_stream(self, path: str, metadata: Any = None) -> Any:
        self._on_the_io_thread()
        return pyarrow.BufferOutputStream()

    def create_dir(self, path: str, recursive: bool = True) -> None:
        pass


def test_the_driver_calls_the_store_without_holding_what_tunes_uploads_wait_for() -> None:
    # the retention pass listed the experiment's folder holding the handler's lock while
    # Tune's syncer uploaded on pyarrow's IO thread, which waited for that lock to make a
    # folder: a resumed study on S3 stopped for good (seen in driver_scale at 100 trials)
    inner = _OneIOThread()
    handler = inner.handler = UnchangedSkipping(inner)
    assert handler.file_names("b/e") == {"tuner.pkl"}
    handler.send("b/e/experiment_state-1.json", b"{}", None)  # an upload waits the same way
    assert handler.file_names("b/e") == {"tuner.pkl", "experiment_state-1.json"}
    assert "b/e/trial/ck" in handler._made


def test_a_folder_asked_for_during_its_first_listing_is_listed_whole() -> None:
    # the names are kept from the first listing on; a second caller during it must not take
    # the names kept so far (none) for the folder's files
    listing, release = threading.Event(), threading.Event()

    class SlowListing(_OneIOThread):
        def get_file_info(self, what: Any) -> list[Any]:
            if isinstance(what, pyarrow.fs.FileSelector) and not listing.is_set():
                listing.set()
                assert release.wait(10)
            return [pyarrow.fs.FileInfo("b/e/tuner.pkl", pyarrow.fs.FileType.File, size=5)]

    handler = UnchangedSkipping(SlowListing())
    first: list[set[str] | None] = []
    lister = threading.Thread(target=lambda: first.append(handler.file_names("b/e")))
    lister.start()
    assert listing.wait(10)
    assert handler.file_names("b/e") == {"tuner.pkl"}  # listed itself, not the empty start
    release.set()
    lister.join(10)
    assert first == [{"tuner.pkl"}] and handler.file_names("b/e") == {"tuner.pkl"}



def test_a_saved_state_is_held_once_while_its_next_version_uploads(tmp_path: Path) -> None:
    # at 1,000 trials a saved state is 33 MB: Tune's pieces of it, their join and the version
    # kept for retention's copy were all alive during an upload, at the driver's peak
    top = tmp_path / "experiment"
    top.mkdir()
    path = f"{top}/experiment_state-1.json"
    seen: list[object] = []

    class Store:
        """The store's client, looking at what the driver holds as each upload starts."""

        def __init__(self) -> None:
            self.fs = pyarrow.fs.LocalFileSystem()

        def open_output_stream(self, where: str, metadata: object = None) -> object:
            seen.append((handler._state, [w.parts for w in uploads]))
            return self.fs.open_output_stream(where, metadata=metadata)

        def get_file_info(self, paths: list[str]) -> object:
            return self.fs.get_file_info(paths)

    handler = UnchangedSkipping(Store())
    uploads: list[object] = []  # Tune's writes of the file, each keeping its pieces
    from mtl_tune.studies.store import _unchanged_uploads

    whole = _unchanged_uploads._WholeUpload

    class Kept(whole):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object) -> None:
            super().__init__(*args)
            uploads.append(self)

    _unchanged_uploads._WholeUpload = Kept
    try:
        fs = pyarrow.fs.PyFileSystem(handler)
        for version in (1, 2):
            with fs.open_output_stream(path) as out:
                out.write(b'{"trial_data": [], ')
                out.write(f'"v": {version}}}'.encode())
    finally:
        _unchanged_uploads._WholeUpload = whole
    # as version 2 went up: no version kept, and Tune's pieces of it let go (the join alone)
    assert seen[1] == (None, [[], []])
    # then version 2 is kept, as the store has it
    (info,) = pyarrow.fs.LocalFileSystem().get_file_info([path])
    assert handler.sent_state(path, f"{info.size}|{info.mtime_ns}") == (
        b'{"trial_data": [], "v": 2}')
