"""An HTTP proxy on loopback that counts the requests and bytes sent to an S3 server.

`driver_scale.py` puts it between every process of a study (the driver, Ray Tune's workers,
the readers) and moto's S3 server, by giving them its address as `AWS_ENDPOINT_URL`. Each
request is counted under `study` (the study's own files) or `tune` (Ray Tune's experiment
folder, `<study>/tune/...`) or `copy` (the driver's copies of Tune's saved state there), with the
bytes of its request line, headers and body.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

HOP_HEADERS = {"transfer-encoding", "connection", "keep-alive", "expect"}


class CountingProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.requests: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.by_kind: Counter[str] = Counter()  # "METHOD path-with-digits-as-#" -> bytes
        self.calls: Counter[str] = Counter()  # the same key -> requests
        self.listings: Counter[str] = Counter()  # a listing's prefix -> requests
        self._lock = threading.Lock()
        self._local = threading.local()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that closed its kept-alive connection: nothing to count

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {"requests": dict(self.requests), "bytes": dict(self.bytes)}

    def count(self, method: str, path: str, sent: int) -> None:
        parts = urlsplit(path)
        key = unquote(parts.path)
        listing = method == "GET" and key.count("/") == 1  # GET of a bucket: a listing
        listed = parse_qs(parts.query).get("prefix", [""]) if listing else None
        kind = ("copy" if "/.mtl-tune-saved-state/" in key  # the driver's copies of Tune's state
                else "tune" if "/tune/" in key else "study")
        with self._lock:
            self.requests[kind] += 1
            self.bytes[kind] += sent
            pattern = f"{method} {re.sub(r'[0-9a-f]{5,}|[0-9]+', '#', key)}"
            self.by_kind[pattern] += sent
            self.calls[pattern] += 1
            if listed is not None:
                self.listings[listed[0]] += 1

    def connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        return conn


def _read_chunked(stream: Any) -> bytes:
    body = bytearray()
    while True:
        size = int(stream.readline().split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(body)
        body += stream.read(size)
        stream.readline()


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else a reply's headers and body wait on a delayed ACK
    server: CountingProxy

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _forward(self) -> None:
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if chunked:
            body = _read_chunked(self.rfile)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        if chunked:
            headers["Content-Length"] = str(len(body))
        sent = len(self.requestline) + 2 + sum(len(k) + len(v) + 4 for k, v in headers.items())
        self.server.count(self.command, self.path, sent + len(body))
        for attempt in range(2):  # a kept-alive connection the server closed meanwhile
            conn = self.server.connection()
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                if attempt:
                    raise
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() in HOP_HEADERS or key.lower() == "content-length":
                continue
            self.send_header(key, value)
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward
