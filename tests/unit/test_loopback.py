"""perpdex.devtools.loopback.KeptConnection: the suite's two RPC clients (web3's POSTs in
tests/conftest.py, the fuzz's raw client) keep one connection open and must replace it
when the node has closed it, before a request is written to it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from perpdex.devtools.loopback import KeptConnection


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        # "/close": the node drops the connection after answering without saying so (as a
        # node does on an idle timeout), so the client still holds it as kept
        self.close_connection = self.path == "/close"

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def node() -> Iterator[tuple[str, int]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _post(kept: KeptConnection, path: str, data: bytes) -> bytes:
    conn = kept.open()
    conn.request("POST", path, data, {"Content-Type": "application/json"})
    return conn.getresponse().read()


def test_the_connection_is_kept_between_requests(node: tuple[str, int]) -> None:
    kept = KeptConnection(*node, timeout=5)
    assert _post(kept, "/", b"one") == b"one"
    first = kept.open()
    assert _post(kept, "/", b"two") == b"two"
    assert kept.open() is first


def test_a_connection_the_node_closed_is_replaced_before_the_next_request(
    node: tuple[str, int],
) -> None:
    kept = KeptConnection(*node, timeout=5)
    assert _post(kept, "/close", b"one") == b"one"  # the node closes after answering
    closed = kept.conn
    deadline = time.monotonic() + 5
    while kept.open() is closed:  # the close reaches this side a moment later
        assert time.monotonic() < deadline, "the closed connection was never noticed"
        time.sleep(0.01)
    assert _post(kept, "/", b"two") == b"two"


def test_close_drops_the_connection(node: tuple[str, int]) -> None:
    kept = KeptConnection(*node, timeout=5)
    first = kept.open()
    kept.close()
    assert kept.conn is None
    assert kept.open() is not first
