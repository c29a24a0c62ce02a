"""Studies on an object store (`s3://bucket/prefix` or `gs://bucket/prefix`, opened by pyarrow).

The store holds each study in the layout of a study folder (`_storage`). A process works on a
local copy of it, a *staging* folder, so that the code reading and writing study folders runs
unchanged on the copy:

- a reader (`study status`, `report ...`) pulls the study into the cache,
  `$MTL_TUNE_CACHE/stores/<hash of the URI>/<study>` (default: `mtl-tune-<user>` in the system's
  temporary folder): every file but the checkpoints' weights and optimizer state, each only when
  it changed since the last pull. A checkpoint's weights are downloaded when a model is loaded
  from it, once (`fetch_checkpoint`). Downloads are `_store_pull`'s.
- a driver pulls into a private temporary folder, removed when it ends, and uploads each file it
  writes at once (`publish`). Ray Tune writes the experiments (results and checkpoints) to the
  store itself.

A staging root holds `.store.json`, naming the store; that is how a path is known to be staged.
Only the driver writes a study, and a store replaces an object whole, so a reader sees a file as
it was before or after a write, never half of it. Credentials and endpoints come from the
environment, as pyarrow reads them (e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL for S3).
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from mtl_tune.exceptions import MtlTuneError, SpecError
from mtl_tune.studies.store._uris import STORE_SCHEMES

logger = logging.getLogger(__name__)

CACHE_ENV = "MTL_TUNE_CACHE"
MARKER = ".store.json"
_DRIVER_ROOTS: dict[str, Path] = {}  # store URI -> the staging root of this process's driver


GCS_RETRY_S = 15  # by default pyarrow's GCS client retries an unreachable store for minutes


@functools.cache
def _open(uri: str) -> tuple[Any, str]:
    import pyarrow.fs

    scheme = uri.split("://", 1)[0].lower()
    if scheme not in STORE_SCHEMES:
        raise SpecError(
            f"{uri}: {scheme}:// is not a supported store; give a local path (or file:///path), "
            f"or one of {', '.join(s + '://bucket/prefix' for s in STORE_SCHEMES)}"
        )
    # without credentials or a region the AWS SDK asks the EC2 metadata service (169.254...)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # unless the user wants that
    try:
        if scheme == "gs":  # so that an unreachable store fails in seconds, not minutes
            from datetime import timedelta

            gcs = pyarrow.fs.GcsFileSystem(retry_time_limit=timedelta(seconds=GCS_RETRY_S))
            return gcs, uri.split("://", 1)[1].rstrip("/")
        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
        if isinstance(fs, pyarrow.fs.S3FileSystem):  # a small file in one PutObject request,
            # not a multipart upload's three (each study write is a small file)
            rebuild, (options,) = fs.__reduce__()  # the URI's and the environment's options
            fs = rebuild({**options, "allow_delayed_open": True})
        return fs, path
    except (OSError, ValueError, pyarrow.ArrowException) as err:
        raise SpecError(
            f"cannot open the object store {uri}: {err}; check the URI and the store's "
            "credentials and endpoint in the environment (for S3: AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL)"
        ) from None


def _store_error(err: OSError, what: str, where: str) -> MtlTuneError:
    return MtlTuneError(
        f"object store error while {what} {where}: {err}; check the store's credentials, "
        "endpoint and permissions, then run again"
    )


def cache_root() -> Path:
    """`$MTL_TUNE_CACHE`, else `mtl-tune-<user>` in the system's temporary folder."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).expanduser().resolve()
    return Path(tempfile.gettempdir()) / f"mtl-tune-{getpass.getuser()}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mark(root: Path, uri: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if not marker.is_file():
        tmp = root / f"{MARKER}.{os.getpid()}"
        tmp.write_text(json.dumps({"uri": uri}))
        os.replace(tmp, marker)
    return root


def reader_root(uri: str) -> Path:
    """The cache's staging root of the store `uri` (shared by the readers of this machine).

    Raises:
        SpecError: The URI has a query (study paths are built by appending to it), pyarrow
            cannot open it, or its bucket does not exist.
    """
    uri = uri.rstrip("/")
    if "?" in uri:
        raise SpecError(
            f"--storage must be a store URI without a query, but got {uri!r}: give the "
            "endpoint, region and credentials in the environment instead (for S3: "
            "AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
        )
    _check_bucket(uri)  # a bad URI fails here, before anything is made
    return _mark(cache_root() / "stores" / _digest(uri), uri)


def _check_bucket(uri: str) -> None:
    """A missing bucket would look like an empty store until the first write: refused now."""
    import pyarrow.fs

    fs, base = _open(uri)
    bucket = base.split("/", 1)[0]
    try:
        missing = fs.get_file_info(bucket).type == pyarrow.fs.FileType.NotFound
    except OSError as err:
        raise _store_error(err, "opening", uri) from None
    if missing:
        raise SpecError(
            f"the bucket {bucket!r} of --storage {uri} does not exist (or these credentials "
            f"cannot see it); create it first (for S3: `aws s3 mb s3://{bucket}`) or correct "
            "the URI"
        )


def driver_root(reader: Path) -> Path:
    """A private staging root for one driver of the store that `reader` stages; the roots of
    drivers of this machine that were killed (their process is gone) are removed."""
    import psutil

    uri = root_uri(reader)
    assert uri is not None, f"{reader} stages no store"
    # per host: a cache on a disk that several machines share holds other hosts' drivers, whose
    # process ids mean nothing here
    parent = cache_root() / "drivers" / socket.gethostname()
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob("driver-*-*"):
        pid = old.name.split("-")[1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    root = _mark(Path(tempfile.mkdtemp(prefix=f"driver-{os.getpid()}-", dir=parent)), uri)
    _DRIVER_ROOTS[uri] = root
    return root


def release_driver_root(root: Path) -> None:
    """Removes a driver's staging copy (everything in it was uploaded as it was written)."""
    _DRIVER_ROOTS.pop(root_uri(root) or "", None)
    shutil.rmtree(root, ignore_errors=True)


def local_path(reference: str) -> Path:
    """The path on this machine of `uri_of(path)`.

    Ray Tune pickles the experiment's callbacks and scheduler with it, and a resumed driver
    unpickles them: the ones that write study files keep the study's URI, which maps into the
    staging copy of whichever driver runs now. A local path is itself.
    """
    for uri, root in _DRIVER_ROOTS.items():
        if reference == uri or reference.startswith(uri + "/"):
            return root / reference[len(uri):].lstrip("/")
    return Path(reference)


def root_uri(root: Path) -> str | None:
    """The store a staging root copies, or None for any other folder."""
    try:
        return str(json.loads((Path(root) / MARKER).read_text())["uri"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _located(path: Path) -> tuple[str, Path] | None:
    """(store URI of the staging root, path relative to that root), for a staged path."""
    path = Path(path)
    for root in (path, *path.parents):
        uri = root_uri(root)
        if uri is not None:
            return uri, path.relative_to(root)
    return None


def is_staged(path: Path) -> bool:
    return _located(path) is not None


def remote(path: Path) -> tuple[Any, str] | None:
    """(pyarrow file system, path in it) of a staged path; None for a plain local path."""
    located = _located(path)
    if located is None:
        return None
    fs, base = _open(located[0])
    relative = located[1].as_posix()
    return fs, base if relative == "." else f"{base}/{relative}"


def uri_of(path: Path) -> str:
    """The store URI of a staged path, else the path itself (for messages and Ray Tune)."""
    located = _located(path)
    if located is None:
        return str(path)
    relative = located[1].as_posix()
    return located[0] if relative == "." else f"{located[0]}/{relative}"


def publish(path: Path, last: str | None = None) -> None:
    """Uploads a staged file (or every file of a staged folder, the one named `last` after
    the others: a marker that says the folder is whole) to the store; else nothing."""
    where = remote(path)
    if where is None:
        return
    fs, target = where
    files = [path] if path.is_file() else sorted(
        (p for p in path.rglob("*") if p.is_file()), key=lambda p: (p.name == last, str(p)))
    try:
        for file in files:
            name = target if file == path else f"{target}/{file.relative_to(path).as_posix()}"
            with fs.open_output_stream(name) as stream:
                stream.write(file.read_bytes())
    except OSError as err:
        raise _store_error(err, "uploading", uri_of(path)) from None


def read_object(path: Path) -> bytes:
    """The bytes of a staged file as the store holds them now.

    Raises:
        FileNotFoundError: The store holds no such object.
        MtlTuneError: The store cannot be read (credentials, endpoint, permissions).
    """
    where = remote(path)
    assert where is not None, f"{path} is not staged"
    fs, name = where
    try:
        with fs.open_input_stream(name) as stream:
            return bytes(stream.read())
    except FileNotFoundError:
        raise
    except OSError as err:
        raise _store_error(err, "reading", uri_of(path)) from None


def write_object(path: Path, data: bytes) -> None:
    """Writes a staged file's object whole (the store replaces an object in one piece)."""
    where = remote(path)
    assert where is not None, f"{path} is not staged"
    fs, name = where
    try:
        with fs.open_output_stream(name) as stream:
            stream.write(data)
    except OSError as err:
        raise _store_error(err, "writing", uri_of(path)) from None


def delete_remote(path: Path) -> None:
    """Deletes the store's copy of a staged file or folder (missing: nothing to do)."""
    import pyarrow.fs

    where = remote(path)
    if where is None:
        return
    fs, target = where
    try:
        kind = fs.get_file_info(target).type
        if kind == pyarrow.fs.FileType.Directory:
            fs.delete_dir(target)
        elif kind == pyarrow.fs.FileType.File:
            fs.delete_file(target)
    except OSError as err:
        raise _store_error(err, "deleting", uri_of(path)) from None


def _listing(fs: Any, base: str) -> dict[str, Any]:
    """Relative path -> FileInfo of every file under `base` in the store."""
    import pyarrow.fs

    try:
        selector = pyarrow.fs.FileSelector(base, recursive=True, allow_not_found=True)
        infos = fs.get_file_info(selector)
    except OSError as err:
        raise _store_error(err, "listing", base) from None
    return {
        info.path[len(base) + 1:]: info
        for info in infos
        if info.type == pyarrow.fs.FileType.File and info.path.startswith(base + "/")
    }


def has_files(path: Path) -> bool:
    """Whether the store holds any file under a staged folder."""
    where = remote(path)
    return where is not None and bool(_listing(*where))


def stored_folders(root: Path, holding: str) -> list[str]:
    """The names of the folders at the top of a staging root's store that hold a file named
    `holding` (e.g. the studies: the folders with a study.json)."""
    import pyarrow.fs

    where = remote(root)
    if where is None:
        return []
    fs, base = where
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(base, allow_not_found=True))
        names = [i.base_name for i in infos if i.type == pyarrow.fs.FileType.Directory]
        held = fs.get_file_info([f"{base}/{name}/{holding}" for name in names])
    except OSError as err:
        raise _store_error(err, "listing", uri_of(root)) from None
    return sorted(n for n, i in zip(names, held, strict=True)
                  if i.type == pyarrow.fs.FileType.File)

