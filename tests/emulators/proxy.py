"""An HTTP proxy handler on loopback in front of the BigQuery emulator, for the test doubles of
Google's behaviour that the emulator lacks (the bytes-billed limit, error answers).

A subclass decides, request by request, to answer itself (`answer`) or to pass the request on to
the emulator unchanged (`forward`): `handle_request(body)` is all it writes.
"""

from __future__ import annotations

import http.client
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class ForwardingHandler(BaseHTTPRequestHandler):
    """Forwards every request to `upstream` (set on the server) unless `handle_request` answers it."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.handle_request(b"")

    def do_DELETE(self) -> None:
        self.handle_request(b"")

    def do_PATCH(self) -> None:
        self.handle_request(self._body())

    def do_PUT(self) -> None:
        self.handle_request(self._body())

    def do_POST(self) -> None:
        self.handle_request(self._body())

    def handle_request(self, body: bytes) -> None:
        """Answer the request or forward it; by default, forward it."""
        self.forward(body)

    def forward(self, body: bytes) -> None:
        upstream: urllib.parse.SplitResult = self.server.upstream  # type: ignore[attr-defined]
        connection = http.client.HTTPConnection(upstream.hostname or "", upstream.port, 60)
        try:
            headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            kept = {name: value for name, value in response.getheaders() if name.lower() not in _HOP_BY_HOP}
            self.answer(response.status, payload, kept)
        finally:
            connection.close()

    def answer(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read what the proxy recorded instead."""
