"""Download the CS224N default final project's public data files.

This module is the back end of ``mtl-tune data fetch``. It downloads the public CSV files of the
``data/`` folder of the GitHub repository ``gpoesia/minbert-default-final-project`` (through raw
file URLs, :data:`DEFAULT_BASE_URL`) into a local data folder:

* each file is streamed in chunks to ``<dest>/<name>.part`` with a tqdm progress bar and renamed
  atomically to ``<dest>/<name>`` once complete;
* a partial ``.part`` file, left by an interrupted run or by a connection that dropped mid-file,
  is resumed with an HTTP ``Range`` request (a server that ignores ``Range`` restarts it from
  zero), and dropped connections are retried;
* an integrity record, ``<dest>/SHA256SUMS.json`` (:data:`RECORD_NAME`), maps each completed file
  to ``{"size": <bytes>, "sha256": "<hex>"}``. It is written (atomically) after every completed
  file. A file already present whose size and SHA-256 match its record is skipped; a file present
  that is not in the record, or does not match it, is never overwritten: :class:`FetchError` is
  raised instead;
* an unreachable server (offline machine, DNS failure, refused connection) raises
  :class:`FetchError` explaining how to use a local copy of the data folder instead
  (``--data-dir`` or the ``MTL_TUNE_DATA`` environment variable).

The record is trust-on-first-use: the upstream repository publishes no checksums, so it guards a
data folder against later corruption or edits, not against a tampered first download.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mtl_tune import __version__
from mtl_tune.exceptions import FetchError

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL: str = (
    "https://raw.githubusercontent.com/gpoesia/minbert-default-final-project/main/data"
)
"""Where the public data files are downloaded from (``<base>/<name>``)."""

PUBLIC_FILES: tuple[str, ...] = (
    "ids-sst-train.csv",
    "ids-sst-dev.csv",
    "ids-sst-test-student.csv",
    "ids-cfimdb-train.csv",
    "ids-cfimdb-dev.csv",
    "ids-cfimdb-test-student.csv",
    "quora-train.csv",
    "quora-dev.csv",
    "quora-test-student.csv",
    "sts-train.csv",
    "sts-dev.csv",
    "sts-test-student.csv",
)
"""The public data files of the default final project, in download order."""

RECORD_NAME: str = "SHA256SUMS.json"
"""File name, inside the data folder, of the integrity record."""

DATA_ENV_VAR: str = "MTL_TUNE_DATA"
"""Environment variable that points mtl-tune at an existing data folder."""

HOME_ENV_VAR: str = "MTL_TUNE_HOME"
"""Environment variable naming mtl-tune's home folder (the default data folder is inside it)."""

PART_SUFFIX: str = ".part"
"""Suffix of a file still being downloaded."""

_CHUNK_SIZE = 64 * 1024
_RETRY_BACKOFF_S = 0.5  # sleep before retry n is n * this, capped at _RETRY_BACKOFF_MAX_S
_RETRY_BACKOFF_MAX_S = 5.0
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)\s*")


@dataclass(frozen=True)
class FetchedFile:
    """The outcome of fetching one data file.

    Attributes:
        name: File name inside the data folder.
        size: Size of the complete file in bytes.
        sha256: Hex SHA-256 digest of the complete file.
        resumed: True if bytes of a partial download (a ``.part`` file left by an earlier run,
            or by a connection that dropped during this one) were kept and completed.
        skipped: True if the file was already complete and matched the integrity record, so
            nothing was downloaded.
    """

    name: str
    size: int
    sha256: str
    resumed: bool
    skipped: bool


class _TransientError(Exception):
    """A download attempt failed in a way that retrying (and resuming) may fix."""


def default_data_dir() -> Path:
    """Return the data folder used when none is given.

    It is ``$MTL_TUNE_HOME/data`` when the environment variable ``MTL_TUNE_HOME`` is set to a
    non-empty value, else ``~/.mtl-tune/data``. The folder is not created.

    Returns:
        The default data folder.
    """
    home = os.environ.get(HOME_ENV_VAR)
    if home:
        return Path(home).expanduser() / "data"
    return Path.home() / ".mtl-tune" / "data"


def fetch_data(
    dest: Path,
    base_url: str = DEFAULT_BASE_URL,
    files: Sequence[str] = PUBLIC_FILES,
    progress: bool = True,
    timeout: float = 30.0,
    retries: int = 3,
) -> list[FetchedFile]:
    """Download the public data files into ``dest``, resuming partial files.

    Every file already in ``dest`` is checked against the integrity record
    (``dest/SHA256SUMS.json``) before anything is downloaded. Each missing file is then fetched
    from ``<base_url>/<name>`` into ``dest/<name>.part`` (resumed with a ``Range`` request when
    that file exists), recorded in the integrity record and renamed to ``dest/<name>``. A
    connection that drops mid-file (incomplete read, reset, timeout, fewer bytes than the
    ``Content-Length``) or an HTTP 408/429/5xx answer is retried up to ``retries`` times, each
    time resuming from the bytes already received. Files completed before an error stay in place
    and in the record, so running again picks up where this run stopped.

    Args:
        dest: Data folder to download into; created (with its parents) if missing.
        base_url: URL of the folder holding the files (http or https); ``<base_url>/<name>`` is
            downloaded for each file.
        files: Names of the files to fetch; defaults to all of :data:`PUBLIC_FILES`. Duplicates
            are fetched once.
        progress: Whether to show a tqdm progress bar (on stderr) for each download.
        timeout: Seconds to wait for connecting and for each read before giving up on an
            attempt.
        retries: How many times to retry a file after its first attempt fails transiently.

    Returns:
        One :class:`FetchedFile` per distinct requested file, in the order of ``files``.

    Raises:
        FetchError: If the server cannot be reached (the message explains how to use a local
            copy through ``--data-dir`` or ``MTL_TUNE_DATA`` instead), a file is not found
            (HTTP 404) or another HTTP error occurs, a file keeps failing after ``retries``
            retries, a file already in ``dest`` is not in the integrity record or does not
            match it (it is left untouched), the record is unreadable, or ``dest`` cannot be
            written.
        ValueError: If a file name is not a plain file name, ``timeout`` is not positive or
            ``retries`` is negative.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    if retries < 0:
        raise ValueError(f"retries must be zero or more, got {retries}")
    names = list(dict.fromkeys(files))
    for name in names:
        _check_name(name)
    scheme = urllib.parse.urlsplit(base_url).scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(f"The data URL must start with http:// or https://, got {base_url!r}.")

    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"Could not create the data folder {dest}: {exc}") from exc
    record_path = dest / RECORD_NAME
    record = _load_record(record_path)

    # Check every file already present first, so a conflict is reported before any download.
    done: dict[str, FetchedFile] = {}
    for name in names:
        target = dest / name
        if target.exists():
            done[name] = _verify_existing(target, record.get(name), record_path)
            logger.info("%s is already complete and verified; skipping it", target)

    # One opener per call, so proxy settings are read from the environment at call time.
    opener = urllib.request.build_opener()
    results: list[FetchedFile] = []
    for name in names:
        if name in done:
            results.append(done[name])
            continue
        url = f"{base_url.rstrip('/')}/{urllib.parse.quote(name)}"
        target = dest / name
        part = dest / (name + PART_SUFFIX)
        logger.info("Fetching %s into %s", url, target)
        resumed = _download(opener, url, name, part, progress, timeout, retries)
        size, digest = _hash_file(part)
        record[name] = {"size": size, "sha256": digest}
        # Record first, then rename: a crash in between leaves a complete .part file, which the
        # next run resumes (the server answers 416) and renames, instead of an unrecorded file.
        _write_record(record_path, record)
        try:
            os.replace(part, target)
        except OSError as exc:
            raise FetchError(f"Could not rename {part} to {target}: {exc}") from exc
        logger.info("Fetched %s (%d bytes, sha256 %s)", target, size, digest)
        results.append(
            FetchedFile(name=name, size=size, sha256=digest, resumed=resumed, skipped=False)
        )
    return results


def _check_name(name: str) -> None:
    """Raise ValueError unless ``name`` is a plain file name that may be fetched."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or name == RECORD_NAME
        or name.endswith(PART_SUFFIX)
    ):
        raise ValueError(f"Not a data file name that can be fetched: {name!r}")


def _offline_message(url: str, reason: object) -> str:
    """Build the message for a server that cannot be reached."""
    return (
        f"Could not reach {url} ({reason}). Fetching the data needs network access. If this "
        "machine is offline, copy the data/ folder of the default final project "
        "(github.com/gpoesia/minbert-default-final-project) onto it some other way and point "
        f"mtl-tune at that folder with --data-dir DIR or the environment variable "
        f"{DATA_ENV_VAR}=DIR instead of fetching."
    )


def _conflict(target: Path, record_path: Path, why: str) -> FetchError:
    """Build the error for a file in the data folder that must not be overwritten."""
    return FetchError(
        f"{target} already exists but {why} the integrity record {record_path}, so it was "
        f"left untouched. Delete {target} to download it again, or pass a different --dest."
    )


def _verify_existing(target: Path, entry: object, record_path: Path) -> FetchedFile:
    """Check a file already in the data folder against its record entry.

    Returns:
        A skipped :class:`FetchedFile` if the file matches its entry.

    Raises:
        FetchError: If the file has no valid entry or does not match it.
    """
    if not isinstance(entry, dict):
        raise _conflict(target, record_path, "is not listed in")
    size, digest = entry.get("size"), entry.get("sha256")
    if not isinstance(size, int) or not isinstance(digest, str):
        raise _conflict(target, record_path, "has an invalid entry in")
    actual_size = target.stat().st_size
    if actual_size != size:
        raise _conflict(
            target, record_path, f"is {actual_size} bytes, not the {size} bytes recorded in"
        )
    actual_size, actual_digest = _hash_file(target)
    if actual_digest != digest.lower():
        raise _conflict(target, record_path, "its SHA-256 does not match")
    return FetchedFile(
        name=target.name, size=actual_size, sha256=actual_digest, resumed=False, skipped=True
    )


def _hash_file(path: Path) -> tuple[int, str]:
    """Return the size and hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise FetchError(f"Could not read {path}: {exc}") from exc
    return size, digest.hexdigest()


def _load_record(record_path: Path) -> dict[str, Any]:
    """Read the integrity record; an absent record is empty."""
    if not record_path.exists():
        return {}
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FetchError(
            f"The integrity record {record_path} cannot be read ({exc}). Delete it together "
            "with the data files in its folder, or pass a different --dest."
        ) from exc
    if not isinstance(record, dict):
        raise FetchError(
            f"The integrity record {record_path} is not a JSON object. Delete it together with "
            "the data files in its folder, or pass a different --dest."
        )
    return record


def _write_record(record_path: Path, record: dict[str, Any]) -> None:
    """Write the integrity record atomically (temporary file, then ``os.replace``)."""
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{record_path.name}.", suffix=".tmp", dir=record_path.parent
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, record_path)
    except OSError as exc:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise FetchError(f"Could not write the integrity record {record_path}: {exc}") from exc


def _download(
    opener: urllib.request.OpenerDirector,
    url: str,
    name: str,
    part: Path,
    progress: bool,
    timeout: float,
    retries: int,
) -> bool:
    """Download ``url`` into ``part`` until complete, retrying transient failures.

    Returns:
        Whether bytes of an earlier partial download were kept.
    """
    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        try:
            # Only the attempt that completes decides: a 206 keeps the bytes of earlier ones,
            # a 200 discards them.
            return _attempt(opener, url, name, part, progress, timeout)
        except _TransientError as exc:
            have = part.stat().st_size if part.exists() else 0
            if attempt == attempts:
                raise FetchError(
                    f"Downloading {name} from {url} failed after {attempts} attempt(s): {exc}. "
                    f"{have} bytes were kept in {part}; run the fetch again to resume."
                ) from exc
            delay = min(_RETRY_BACKOFF_S * attempt, _RETRY_BACKOFF_MAX_S)
            logger.warning(
                "Downloading %s failed (%s); retrying from byte %d in %.1f s (%d/%d)",
                name,
                exc,
                have,
                delay,
                attempt,
                retries,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _attempt(
    opener: urllib.request.OpenerDirector,
    url: str,
    name: str,
    part: Path,
    progress: bool,
    timeout: float,
) -> bool:
    """Make one request for ``url``, appending to or restarting ``part``.

    Returns:
        Whether bytes already in ``part`` were kept (the server answered 206 or 416).

    Raises:
        _TransientError: If the attempt failed in a way that a retry may fix.
        FetchError: If it failed in a way that a retry will not fix.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"mtl-tune/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            return _http_error(exc, opener, url, name, part, progress, timeout, offset)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, OSError):
            raise FetchError(_offline_message(url, exc.reason)) from exc
        raise FetchError(f"Could not fetch {url}: {exc.reason}. Check --url.") from exc
    except (http.client.HTTPException, OSError) as exc:
        raise _TransientError(f"{type(exc).__name__}: {exc}") from exc

    with response:
        status = response.status
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise _TransientError(
                    f"the server answered Range bytes={offset}- with Content-Range "
                    f"{response.headers.get('Content-Range')!r}; restarting from zero"
                )
            start = offset
            total: int | None = None if match.group(3) == "*" else int(match.group(3))
            if total is None and length is not None:
                total = start + length
        elif status == 200:
            if offset:
                logger.info("The server ignored the Range request for %s; restarting it", name)
            start = 0
            total = length
        else:
            raise FetchError(f"Downloading {name} from {url} failed: unexpected HTTP {status}.")
        _stream(response, name, part, start, total, progress)
        if length is not None and part.stat().st_size < start + length:
            raise _TransientError(
                f"the connection closed after {part.stat().st_size} of {start + length} bytes"
            )
    return start > 0


def _http_error(
    exc: urllib.error.HTTPError,
    opener: urllib.request.OpenerDirector,
    url: str,
    name: str,
    part: Path,
    progress: bool,
    timeout: float,
    offset: int,
) -> bool:
    """Handle an HTTP error answer to one attempt (see :func:`_attempt`)."""
    if exc.code == 416 and offset:
        match = _UNSATISFIED_RANGE.fullmatch(exc.headers.get("Content-Range", "") or "")
        if match is not None and int(match.group(1)) == offset:
            logger.info("%s was already completely downloaded", part)
            return True
        logger.info("The server cannot resume %s from byte %d; restarting it", name, offset)
        part.unlink(missing_ok=True)
        return _attempt(opener, url, name, part, progress, timeout)
    if exc.code == 404:
        raise FetchError(
            f"{name} was not found at {url} (HTTP 404). Check the file name and --url."
        ) from exc
    if exc.code in (408, 429) or exc.code >= 500:
        raise _TransientError(f"HTTP {exc.code} {exc.reason}") from exc
    raise FetchError(
        f"Downloading {name} from {url} failed: HTTP {exc.code} {exc.reason}."
    ) from exc


def _stream(
    response: Any, name: str, part: Path, start: int, total: int | None, progress: bool
) -> None:
    """Write the body of ``response`` to ``part``, appending if ``start`` > 0."""
    mode = "ab" if start else "wb"
    try:
        fh = part.open(mode)
    except OSError as exc:
        raise FetchError(f"Could not write {part}: {exc}") from exc
    # read1 returns what has arrived (at most one socket read), so a timeout or a reset never
    # discards bytes already received, as a buffered read(n) would.
    read = getattr(response, "read1", response.read)
    with (
        fh,
        tqdm(
            total=total,
            initial=start,
            desc=name,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not progress,
        ) as bar,
    ):
        while True:
            try:
                chunk = read(_CHUNK_SIZE)
            except (http.client.HTTPException, OSError) as exc:
                raise _TransientError(f"{type(exc).__name__}: {exc}") from exc
            if not chunk:
                return
            try:
                fh.write(chunk)
            except OSError as exc:
                raise FetchError(f"Could not write {part}: {exc}") from exc
            bar.update(len(chunk))
