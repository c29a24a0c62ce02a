"""Where Ray Tune writes a study's experiments: the path and the file system to give it.

Given an `s3://` URI, Ray Tune opens S3 with pyarrow's defaults, which upload every file, however
small, as a multipart upload: three requests. Tune uploads its driver's whole folder at each save
of the experiment (every trial's logs) and each checkpoint file by file, so on a store most of a
study's requests are these. Tune gets here an S3 client that puts a small file in one request
(`allow_delayed_open`) and writes in the calling thread (`background_writes=False`): with
background writes, pyarrow's `copy_files`, how Tune uploads, kept memory for every file it sent
through a delayed-open client (a process uploading 900 small files five times grew from 91 to
1,923 MiB; 106 MiB without background writes), and a driver reached 2.8 GiB at 1,000 trials.
The client is wrapped so that a file the driver uploads again unchanged (an ended trial's logs,
at every save) is not sent again (`_unchanged_uploads`). Other stores (gs://) and local folders
are Tune's to open, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtl_tune.studies.store._object_store import remote, uri_of
from mtl_tune.studies.store._unchanged_uploads import UnchangedSkipping


def _uploads_client(store: Any) -> Any:
    rebuild, (options,) = store.__reduce__()  # the store's own options and credentials
    return rebuild({**options, "allow_delayed_open": True, "background_writes": False})


def tune_storage(path: Path) -> tuple[str, Any]:
    """(path, pyarrow file system) to give Ray Tune for a staged path on an S3 store; else
    (the path or URI, None), for Tune to open itself."""
    import pyarrow.fs

    where = remote(path)
    if where is None or not isinstance(where[0], pyarrow.fs.S3FileSystem):
        return uri_of(path), None
    return where[1], pyarrow.fs.PyFileSystem(UnchangedSkipping(_uploads_client(where[0])))
