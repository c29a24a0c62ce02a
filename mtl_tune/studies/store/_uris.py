"""Which texts name an object store, and which a local path: the URI rules of `--storage` and
of a checkpoint argument."""

from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
from pathlib import Path

from mtl_tune.exceptions import SpecError

STORE_SCHEMES = ("s3", "gs")  # the stores a study or a checkpoint may live on


def is_store_uri(text: str | os.PathLike[str]) -> bool:
    """Whether `--storage` names an object store (a URI whose scheme is not `file`)."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", str(text))
    return match is not None and match.group(1).lower() != "file"


def file_uri_path(text: str | os.PathLike[str]) -> Path | None:
    """The path a `file://` URI names (`file:///abs/path`), else None.

    Raises:
        SpecError: The URI names another machine.
    """
    parsed = urllib.parse.urlparse(str(text))
    if parsed.scheme.lower() != "file":
        return None
    if parsed.netloc not in ("", "localhost"):
        raise SpecError(f"{text} names the host {parsed.netloc!r}; a file:// URI must name this "
                        "machine's files: file:///absolute/path")
    return Path(urllib.request.url2pathname(parsed.path))
