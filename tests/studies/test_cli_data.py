"""`mtl-tune data fetch` through the CLI, against a loopback HTTP server (the fetch logic itself is
tested in tests/platform/test_fetch.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.platform.fetch import PUBLIC_FILES

BODIES = {name: f"id\tsentence\n{i}\tfile {name}\n".encode() for i, name in enumerate(PUBLIC_FILES)}


@pytest.fixture
def base_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = BODIES.get(self.path.removeprefix("/data/"))
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/data"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5.0)


def test_data_fetch_cli_downloads_then_verifies(base_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    args = ["data", "fetch", "--dest", str(dest), "--url", base_url]
    first = CliRunner().invoke(app, args)
    # the fetch succeeds and names every public file as downloaded
    assert first.exit_code == 0, first.output
    for name in PUBLIC_FILES:
        # each file holds the served bytes
        assert (dest / name).read_bytes() == BODIES[name]
        # and is listed in the printed table
        assert name in first.stdout
    # a fresh folder downloads every file
    assert first.stdout.count("downloaded") == len(PUBLIC_FILES)
    # it tells how to point the other commands at the folder
    assert f"--data-dir {dest}" in first.stdout
    second = CliRunner().invoke(app, args)
    # a second run downloads nothing: every file is verified against the record
    assert second.exit_code == 0 and second.stdout.count("verified") == len(PUBLIC_FILES)


def test_data_fetch_cli_error_is_exit_1(base_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["data", "fetch", "--dest", str(tmp_path), "--url", base_url + "x"]
    )
    # a missing file is a clean error: exit code 1, the message on stderr, no traceback
    assert result.exit_code == 1
    # the message goes to stderr and names the HTTP status
    assert result.stderr.startswith("Error: ") and "404" in result.stderr
    # without a traceback
    assert "Traceback" not in result.output
