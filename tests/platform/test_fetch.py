"""Tests of mtl_tune.platform.fetch against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from mtl_tune.exceptions import FetchError
from mtl_tune.platform import fetch
from mtl_tune.platform.fetch import (
    DEFAULT_BASE_URL,
    PUBLIC_FILES,
    RECORD_NAME,
    FetchedFile,
    default_data_dir,
    fetch_data,
)

SOURCE = Path("/work/shared/data/cs224n-original")
THREE = ("ids-sst-dev.csv", "sts-dev.csv", "quora-dev.csv")

pytestmark = pytest.mark.skipif(not SOURCE.is_dir(), reason=f"{SOURCE} is not available")


@dataclass
class ServerState:
    """What the test server serves and what it saw."""

    base_url: str = ""
    # (file name, Range header or None) of every GET, in order.
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    # file name -> K: the first GET of that file sends K body bytes, then closes the connection.
    drop_after: dict[str, int] = field(default_factory=dict)
    # file name -> K: the first GET of that file sends K body bytes, then resets the connection.
    reset_after: dict[str, int] = field(default_factory=dict)
    # file name -> K: the first GET of that file sends K body bytes, then stalls until released.
    stall_after: dict[str, int] = field(default_factory=dict)
    # When true the server ignores Range headers and always answers 200 with the whole file.
    ignore_range: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gets(self, name: str) -> list[str | None]:
        """Return the Range headers of the GETs of one file."""
        with self.lock:
            return [rng for got, rng in self.requests if got == name]


def _make_handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            name = unquote(self.path.removeprefix("/data/"))
            range_header = self.headers.get("Range")
            with state.lock:
                state.requests.append((name, range_header))
                drop = state.drop_after.pop(name, None)
                stall = state.stall_after.pop(name, None)
                reset = state.reset_after.pop(name, None)
            path = SOURCE / name
            if "/" in name or not path.is_file():
                self.send_error(404, "Not Found")
                return
            data = path.read_bytes()
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
            if match is not None and not state.ignore_range:
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cut = next((k for k in (drop, stall, reset) if k is not None), None)
            if cut is not None:
                # Full Content-Length announced, only `cut` bytes sent, then the socket closes.
                self.wfile.write(body[:cut])
                self.wfile.flush()
                if stall is not None:
                    state.release.wait(5.0)
                if reset is not None:
                    # SO_LINGER 0 makes close() send a TCP RST instead of a FIN.
                    linger = struct.pack("ii", 1, 0)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    self.connection.close()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture(autouse=True)
def _no_proxy_no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # Requests to 127.0.0.1 must never go through a proxy; retries need no sleep in tests.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(fetch, "_RETRY_BACKOFF_S", 0.0)


@pytest.fixture
def server() -> Iterator[ServerState]:
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/data"
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5.0)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(dest: Path) -> dict[str, dict[str, object]]:
    return json.loads((dest / RECORD_NAME).read_text(encoding="utf-8"))


def test_constants() -> None:
    # The default base URL is the raw data/ folder of the upstream repository.
    assert DEFAULT_BASE_URL == (
        "https://raw.githubusercontent.com/gpoesia/minbert-default-final-project/main/data"
    )
    # All twelve public files are listed, once each.
    assert len(PUBLIC_FILES) == 12 and len(set(PUBLIC_FILES)) == 12


def test_fetches_complete_files(server: ServerState, tmp_path: Path) -> None:
    dest = tmp_path / "new" / "data"
    results = fetch_data(dest, base_url=server.base_url, files=THREE, progress=True)
    # One result per requested file, in order.
    assert [r.name for r in results] == list(THREE)
    # A fresh download is neither resumed nor skipped.
    assert not any(r.resumed or r.skipped for r in results)
    record = _record(dest)
    for result in results:
        source = SOURCE / result.name
        # The downloaded file is byte-equal to the served file.
        assert (dest / result.name).read_bytes() == source.read_bytes()
        # The record holds the size and SHA-256 of the source file.
        assert record[result.name] == {"size": source.stat().st_size, "sha256": _sha256(source)}
        # The returned FetchedFile agrees with the record.
        assert result == FetchedFile(
            result.name, source.stat().st_size, _sha256(source), resumed=False, skipped=False
        )
        # No .part file is left behind.
        assert not (dest / (result.name + ".part")).exists()
        # A fresh download sends no Range header.
        assert server.gets(result.name) == [None]


def test_dropped_connection_is_resumed(server: ServerState, tmp_path: Path) -> None:
    name, cut = "sts-dev.csv", 50_000
    server.drop_after[name] = cut
    (result,) = fetch_data(tmp_path, base_url=server.base_url, files=[name], progress=False)
    # The file completed after the drop is marked as resumed.
    assert result.resumed and not result.skipped
    # The retry asked only for the bytes after the ones already received.
    assert server.gets(name) == [None, f"bytes={cut}-"]
    # The final bytes equal the source.
    assert (tmp_path / name).read_bytes() == (SOURCE / name).read_bytes()


def test_read_timeout_is_retried_and_resumed(server: ServerState, tmp_path: Path) -> None:
    name, cut = "ids-sst-dev.csv", 30_000
    server.stall_after[name] = cut
    (result,) = fetch_data(
        tmp_path, base_url=server.base_url, files=[name], progress=False, timeout=0.3
    )
    # A read that times out mid-file is retried and the result marked as resumed.
    assert result.resumed
    # The retry resumes from the bytes received before the timeout.
    assert server.gets(name) == [None, f"bytes={cut}-"]
    # The final bytes equal the source.
    assert (tmp_path / name).read_bytes() == (SOURCE / name).read_bytes()


def test_reset_connection_is_retried(
    server: ServerState, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name, cut = "sts-dev.csv", 60_000
    server.reset_after[name] = cut
    (result,) = fetch_data(tmp_path, base_url=server.base_url, files=[name], progress=False)
    # A connection reset mid-file is retried and the file completes.
    assert (tmp_path / name).read_bytes() == (SOURCE / name).read_bytes()
    # The reset was seen as a transient failure and logged.
    assert "ConnectionResetError" in caplog.text or "connection closed" in caplog.text
    first, retry = server.gets(name)
    # Exactly one retry was needed, asking at most for the bytes after those sent.
    assert first is None and (retry is None or int(retry[6:-1]) <= cut)
    # Only a retry that kept bytes counts as resumed.
    assert result.resumed == (retry is not None)


def test_drop_without_retries_keeps_the_part_file(server: ServerState, tmp_path: Path) -> None:
    name, cut = "sts-dev.csv", 40_000
    server.drop_after[name] = cut
    # With no retries a dropped connection fails the fetch, naming the file.
    with pytest.raises(FetchError, match=name):
        fetch_data(tmp_path, base_url=server.base_url, files=[name], progress=False, retries=0)
    # With no retries the error is raised, the received bytes are kept for the next run ...
    assert (tmp_path / (name + ".part")).read_bytes() == (SOURCE / name).read_bytes()[:cut]
    # ... and no unfinished file appears under the final name.
    assert not (tmp_path / name).exists()
    (result,) = fetch_data(tmp_path, base_url=server.base_url, files=[name], progress=False)
    # The next run resumes the kept bytes.
    assert result.resumed and server.gets(name)[-1] == f"bytes={cut}-"
    # The resumed file is complete.
    assert (tmp_path / name).read_bytes() == (SOURCE / name).read_bytes()


def test_existing_part_file_is_resumed(server: ServerState, tmp_path: Path) -> None:
    name, cut = "ids-sst-dev.csv", 12_345
    source = (SOURCE / name).read_bytes()
    (tmp_path / (name + ".part")).write_bytes(source[:cut])
    (result,) = fetch_data(tmp_path, base_url=server.base_url, files=[name], progress=False)
    # Only the remainder after the partial file's bytes is requested.
    assert server.gets(name) == [f"bytes={cut}-"]
    # The result is marked as resumed.
    assert result.resumed
    # The file is complete.
    assert (tmp_path / name).read_bytes() == source
    # The record describes the complete file.
    assert _record(tmp_path)[name]["sha256"] == hashlib.sha256(source).hexdigest()


def test_complete_part_file_is_finished(server: ServerState, tmp_path: Path) -> None:
    name = "sts-dev.csv"
    source = (SOURCE / name).read_bytes()
    (tmp_path / (name + ".part")).write_bytes(source)
    (result,) = fetch_data(tmp_path, base_url=server.base_url, files=[name], progress=False)
    # A .part file that is already complete (the server answers 416) is renamed into place.
    assert (tmp_path / name).read_bytes() == source
    # Its hash is recorded as for a downloaded file.
    assert result.sha256 == hashlib.sha256(source).hexdigest()
    # Only the (empty) remainder was requested.
    assert server.gets(name) == [f"bytes={len(source)}-"]


def test_server_ignoring_range_restarts(server: ServerState, tmp_path: Path) -> None:
    name, cut = "ids-sst-dev.csv", 10_000
    source = (SOURCE / name).read_bytes()
    server.ignore_range = True
    (tmp_path / (name + ".part")).write_bytes(b"x" * cut)
    (result,) = fetch_data(tmp_path, base_url=server.base_url, files=[name], progress=False)
    # A 200 answer to a Range request restarts the file from zero (no stale bytes kept).
    assert (tmp_path / name).read_bytes() == source
    # A restarted file is not marked as resumed.
    assert not result.resumed


def test_rerun_skips_verified_files(server: ServerState, tmp_path: Path) -> None:
    first = fetch_data(tmp_path, base_url=server.base_url, files=THREE, progress=False)
    seen = len(server.requests)
    second = fetch_data(tmp_path, base_url=server.base_url, files=THREE, progress=False)
    # A second run makes no request for files that match the record.
    assert len(server.requests) == seen
    # Each file is reported as skipped.
    assert all(r.skipped and not r.resumed for r in second)
    # Skipped files report the same size and hash as when downloaded.
    assert [(r.name, r.size, r.sha256) for r in second] == [
        (r.name, r.size, r.sha256) for r in first
    ]


def test_mismatching_file_is_not_overwritten(server: ServerState, tmp_path: Path) -> None:
    name = "sts-dev.csv"
    fetch_data(tmp_path, base_url=server.base_url, files=[name], progress=False)
    edited = b"edited by hand\n"
    (tmp_path / name).write_bytes(edited)
    seen = len(server.requests)
    # A file that no longer matches its record fails the fetch.
    with pytest.raises(FetchError) as info:
        fetch_data(tmp_path, base_url=server.base_url, files=[name], progress=False)
    # The error names the file and says how to proceed.
    assert name in str(info.value) and "--dest" in str(info.value)
    # The file is left unchanged.
    assert (tmp_path / name).read_bytes() == edited
    # Nothing was downloaded.
    assert len(server.requests) == seen


def test_unrecorded_file_is_not_overwritten(server: ServerState, tmp_path: Path) -> None:
    name = "ids-sst-dev.csv"
    mine = b"my own file\n"
    (tmp_path / name).write_bytes(mine)
    # A file present but not in the record fails the fetch.
    with pytest.raises(FetchError) as info:
        fetch_data(tmp_path, base_url=server.base_url, files=THREE, progress=False)
    # A file that is not in the record is reported by name, with the way out.
    assert name in str(info.value) and "--dest" in str(info.value)
    # It is left unchanged.
    assert (tmp_path / name).read_bytes() == mine
    # The conflict is found before anything is downloaded.
    assert server.requests == []


def test_offline_message(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port, so the fetch fails.
    with pytest.raises(FetchError) as info:
        fetch_data(
            tmp_path, base_url=f"http://127.0.0.1:{port}/data", files=THREE[:1], progress=False
        )
    message = str(info.value)
    # An unreachable server is reported as such.
    assert "Could not reach" in message
    # The message points at --data-dir and MTL_TUNE_DATA for a local copy.
    assert "MTL_TUNE_DATA" in message and "--data-dir" in message


def test_missing_file_is_a_404_error(server: ServerState, tmp_path: Path) -> None:
    # quora-train.csv is not in the served folder, so the server answers 404.
    with pytest.raises(FetchError) as info:
        fetch_data(tmp_path, base_url=server.base_url, files=["quora-train.csv"], progress=False)
    # The error names the missing file.
    assert "quora-train.csv" in str(info.value)
    # The error names the URL that was tried.
    assert f"{server.base_url}/quora-train.csv" in str(info.value)
    # A 404 is not retried.
    assert server.gets("quora-train.csv") == [None]


def test_files_done_before_an_error_are_kept(server: ServerState, tmp_path: Path) -> None:
    files = ["sts-dev.csv", "quora-train.csv"]
    # The missing second file fails the fetch.
    with pytest.raises(FetchError):
        fetch_data(tmp_path, base_url=server.base_url, files=files, progress=False)
    # A file completed before a later failure stays in place.
    assert (tmp_path / "sts-dev.csv").read_bytes() == (SOURCE / "sts-dev.csv").read_bytes()
    # It stays in the record too.
    assert set(_record(tmp_path)) == {"sts-dev.csv"}


@pytest.mark.parametrize("bad", ["../x.csv", "a/b.csv", "", RECORD_NAME, "x.csv.part"])
def test_bad_file_names_are_rejected(tmp_path: Path, bad: str) -> None:
    # Only plain file names can be fetched, so nothing is written outside dest.
    with pytest.raises(ValueError):
        fetch_data(tmp_path, base_url="http://127.0.0.1:1/data", files=[bad], progress=False)


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MTL_TUNE_HOME", str(tmp_path))
    # MTL_TUNE_HOME set: the data folder is inside it.
    assert default_data_dir() == tmp_path / "data"
    monkeypatch.delenv("MTL_TUNE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # MTL_TUNE_HOME unset: ~/.mtl-tune/data.
    assert default_data_dir() == tmp_path / "home" / ".mtl-tune" / "data"
