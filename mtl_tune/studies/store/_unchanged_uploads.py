"""A file system for Ray Tune's driver that does not send again what it sent unchanged.

At every save of an experiment (every 10 s or more) Ray Tune uploads its driver's whole staging
folder: the saved state and every trial's logs, those of trials that ended long ago included
(Ray 2.60 excludes nothing, and its syncer is private). On an object store at 1,000 trials that
was some 4,000 files a save, most of them the bytes already there: the requests per trial event
grew with the study. `UnchangedSkipping` wraps the store's client: a file written whole with the
bytes this process last wrote at that path (a BLAKE2 digest) is not sent, nor a directory
marker it made already (nor again the markers of a new folder's parents); whatever is
different is sent as before. It also keeps the newest saved state it sent, which checkpoint
retention then reads rather than downloading it again (33 MB at 1,000 trials, at every pass),
and the names of the files at the top of a folder, listed once and then kept by its own writes
and deletions (`file_names`): on a store, a listing of the experiment's folder returns every
trial's folder (1,000) to find Tune's handful of files, at every retention pass.
What another process or client changes meanwhile is not seen, so it is given to Tune's driver
alone: its deep copies (Tune makes one for its syncer and for each trial) share one memory, and
pickled (into the trials' workers, which upload checkpoints, and `tuner.pkl`) it becomes a
pass-through that buffers no checkpoint's bytes and remembers only the directories it made.
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import threading
from typing import Any

import pyarrow as pa
import pyarrow.fs

from mtl_tune.studies.store._saved_state import STATE_PATTERN


class UnchangedSkipping(pyarrow.fs.FileSystemHandler):
    """Delegates to `fs` (a pyarrow file system); with `skip`, unchanged files are not sent."""

    def __init__(self, fs: Any, skip: bool = True) -> None:
        # Ray copies files single-threaded through its own S3 client only; through this one
        # pyarrow's copy_files ran on its eight IO threads, and each kept its 64 MB copy buffer:
        # a process uploading 1,000 trials' logs and a 33 MB state grew 365 -> 494 MiB over 8
        # uploads (349 MiB flat, and twice as fast, on one IO thread)
        pa.set_io_thread_count(1)
        self.fs, self.skip = fs, skip
        self._sent: dict[str, bytes] = {}  # path -> digest of the bytes last sent there
        self._made: set[str] = set()  # directories made
        # the newest saved state sent: path, bytes, and its stamp on the store ('size|mtime')
        self._state: tuple[str, bytes, str] | None = None
        self._files: dict[str, set[str]] = {}  # folder -> the names of the files in it
        self._sending: dict[str, object] = {}  # path -> the upload under way there
        self._listing: dict[str, int] = {}  # folder -> its listings under way
        # the driver's threads share it (Tune's syncer uploads, the callbacks read and delete);
        # held for these fields alone, never across a call to the store: the store's client
        # waits on pyarrow's IO thread, which may itself be in a call of this handler
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        return UnchangedSkipping, (self.fs, False)

    def __deepcopy__(self, memo: dict[int, Any]) -> UnchangedSkipping:
        # Tune deep-copies its storage context (with the file system) into its syncer and each
        # trial: within the driver every copy shares what was sent
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnchangedSkipping) and other.fs.equals(self.fs)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return f"unchanged-skipping {self.fs.type_name}"

    def normalize_path(self, path: str) -> str:
        return str(self.fs.normalize_path(path))

    # -- reads: the store's --

    def get_file_info(self, paths: list[str]) -> list[Any]:
        return list(self.fs.get_file_info(paths))

    def get_file_info_selector(self, selector: Any) -> list[Any]:
        return list(self.fs.get_file_info(selector))

    def open_input_stream(self, path: str) -> Any:
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        return self.fs.open_input_file(path)

    def file_names(self, folder: str) -> set[str] | None:
        """The names of the files directly in `folder`: listed on the first call, then kept by
        what this process writes, copies, moves and deletes there (a file deleted during the
        listing may stay named: a caller asks for each by name); None for a pass-through (a
        worker's copy, which does not keep them)."""
        if not self.skip:
            return None
        folder = folder.rstrip("/")
        with self._lock:
            known = self._files.get(folder)
            if known is not None and self._listing.get(folder, 0) == 0:
                return set(known)
            # what is written during the listing is kept too; a caller meanwhile lists too
            self._files.setdefault(folder, set())
            self._listing[folder] = self._listing.get(folder, 0) + 1
        try:
            selector = pyarrow.fs.FileSelector(folder, allow_not_found=True)
            listed = {i.base_name for i in self.fs.get_file_info(selector)
                      if i.type == pyarrow.fs.FileType.File}
        finally:
            with self._lock:
                self._listing[folder] -= 1
        with self._lock:
            self._files.setdefault(folder, set()).update(listed)
            return set(self._files[folder])

    def _file_made(self, path: str) -> None:
        """Called under the lock."""
        folder, _, name = path.rpartition("/")
        if folder in self._files:
            self._files[folder].add(name)

    # -- writes --

    def create_dir(self, path: str, recursive: bool) -> None:
        path = path.rstrip("/")
        if path in self._made:
            return
        parent = path.rpartition("/")[0]
        # S3 makes a recursive directory as a request for the bucket and a marker per level
        # (seven for a checkpoint's folder); below a directory made here, the folder's own
        # marker and a look at its parent do
        self.fs.create_dir(path, recursive=recursive and parent not in self._made)
        with self._lock:
            while path and path not in self._made:
                self._made.add(path)
                path = path.rpartition("/")[0] if recursive else ""

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        if not self.skip:
            return self.fs.open_output_stream(path, metadata=metadata)
        return pa.PythonFile(_WholeUpload(self, path, metadata), mode="w")

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        self._forget(path, folder=False)
        with self._lock:
            self._file_made(path)
        return self.fs.open_append_stream(path, metadata=metadata)

    def send(self, path: str, data: bytes, metadata: Any) -> None:
        """Puts `data` at `path` unless this process last put the same bytes there."""
        digest = hashlib.blake2b(data, digest_size=16).digest()
        token = object()
        with self._lock:
            if self._sent.get(path) == digest:
                return
            self._sent.pop(path, None)  # until the new bytes are all there
            self._sending[path] = token
            if self._state is not None and self._state[0] == path:  # the store's copy of it
                self._state = None  # changes now (and its tens of MB are not held twice)
        # never under the lock: the store's client may wait on pyarrow's IO thread, which may be
        # in a call of this handler for Tune's uploads (a listing under the lock deadlocked so)
        with self.fs.open_output_stream(path, metadata=metadata) as out:
            out.write(data)
        stamp = None
        if fnmatch.fnmatch(posixpath.basename(path), STATE_PATTERN):
            (info,) = self.fs.get_file_info([path])
            stamp = f"{info.size}|{info.mtime_ns}"
        with self._lock:
            if self._sending.get(path) is not token:  # forgotten or sent again meanwhile
                return
            del self._sending[path]
            self._sent[path] = digest
            self._file_made(path)
            if stamp is not None and (self._state is None or path >= self._state[0]):
                self._state = path, data, stamp

    def sent_state(self, path: str, stamp: str) -> bytes | None:
        """The bytes this process last sent to `path`, a Tune saved state (the newest it sent),
        if the store still has them as sent (`stamp`: the file's 'size|mtime' there); None
        otherwise."""
        with self._lock:
            if self._state is None or self._state[0] != path or self._state[2] != stamp:
                return None
            return self._state[1]

    def _forget(self, path: str, folder: bool = True) -> None:
        """Forgets what was sent or made at `path` and, for a folder, below it (retention
        deletes a file at a time: a file's path alone is looked up, not every path sent)."""
        with self._lock:
            self._sent.pop(path, None)
            self._sending.pop(path, None)
            self._made.discard(path.rstrip("/"))
            parent, _, name = path.rstrip("/").rpartition("/")
            self._files.get(parent, set()).discard(name)
            if self._state is not None and self._state[0] == path:
                self._state = None
            if not folder:
                return
            inside = path.rstrip("/") + "/" if path.strip("/") else ""  # "": everything
            for sent in [p for p in self._sent if p.startswith(inside)]:
                del self._sent[sent]
            for sending in [p for p in self._sending if p.startswith(inside)]:
                del self._sending[sending]
            if any(d.startswith(inside) for d in self._made):
                self._made = {d for d in self._made if not d.startswith(inside)}
            if self._state is not None and self._state[0].startswith(inside):
                self._state = None
            for listed in [f for f in self._files if f.startswith(inside) or f == path.rstrip("/")]:
                del self._files[listed]

    def delete_dir(self, path: str) -> None:
        self._forget(path)
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._forget(path)
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        self._forget("")
        self.fs.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path: str) -> None:
        self._forget(path, folder=False)
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._forget(src)
        self._forget(dest)
        self.fs.move(src, dest)
        if dest.rpartition("/")[0] in self._files:  # a file or a folder, moved
            (info,) = self.fs.get_file_info([dest])
            if info.type == pyarrow.fs.FileType.File:
                with self._lock:
                    self._file_made(dest)

    def copy_file(self, src: str, dest: str) -> None:
        self._forget(dest, folder=False)
        self.fs.copy_file(src, dest)
        with self._lock:
            self._file_made(dest)


class _WholeUpload:
    """A file being written: its bytes are sent (or not) when it is closed."""

    def __init__(self, handler: UnchangedSkipping, path: str, metadata: Any) -> None:
        self.handler, self.path, self.metadata = handler, path, metadata
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(self.parts[-1])

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            # the pieces let go before the upload: a saved state is tens of MB at 1,000 trials
            data, self.parts = b"".join(self.parts), []
            self.handler.send(self.path, data, self.metadata)
