"""Shared test set-up: private caches, no network but loopback, and a local HTTP server for downloads."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test writes its caches under a temporary folder, never the user's."""
    monkeypatch.setenv("BERTNLI_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def local_only(monkeypatch):
    """No proxies, and no connection anywhere but 127.0.0.1."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    real = socket.socket.connect

    def guarded(sock, address, *args, **kwargs):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            assert address[0] in ("127.0.0.1", "localhost", "::1"), f"a test tried to reach {address}"
        return real(sock, address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path → bytes), counting requests; ``claimed_length`` fakes short bodies and
    ``delay`` (path → seconds) holds a body back."""

    def do_GET(self):
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        claimed = self.server.claimed_length.get(self.path, len(body))
        self.send_response(200)
        self.send_header("Content-Length", str(claimed))
        self.end_headers()
        time.sleep(self.server.delay.get(self.path, 0))
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    """A real HTTP server on 127.0.0.1 (a free port) in a thread; put files in ``.files``; ``.url`` is its root."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.claimed_length, httpd.delay = {}, [], {}, {}
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
