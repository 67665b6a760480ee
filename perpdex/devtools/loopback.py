"""A kept-alive HTTP connection to a node on this machine, for the test suite's JSON-RPC.

`requests` prepares each request, merges the environment's proxy settings and goes
through urllib3's pool: ~0.5-0.66 ms of CPU a request, against ~0.1 ms for a plain
`http.client` connection kept open. The suite sends hundreds of thousands of requests to
its own anvil, so both of its RPC paths use this: web3's POSTs (tests/conftest.py
`_LoopbackPost`) and the stateful fuzz's raw client (tests/fuzz/conftest.py `Rpc`).
"""

from __future__ import annotations

import http.client
import select
import socket


class KeptConnection:
    """One HTTP/1.1 connection to `host:port`, reopened when the node has closed it.

    As urllib3 does, a kept connection the node closed while it sat idle is noticed
    before a request is written (an idle connection is readable only then), so a request
    is never written to a dead socket; the caller decides whether a request that failed
    mid-way may be sent again."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def open(self) -> http.client.HTTPConnection:
        """The live connection: the kept one, or a new one if the node closed it."""
        conn = self.conn
        if conn is not None and conn.sock is not None and select.select([conn.sock], [], [], 0)[0]:
            self.close()  # readable while idle: the node closed it
            conn = None
        if conn is None or conn.sock is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            conn.connect()
            # http.client sends the headers and the body apart: no Nagle delay between
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn = conn
        return conn

    def close(self) -> None:
        """Drops the connection (after an error, or when the response said it closes)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
