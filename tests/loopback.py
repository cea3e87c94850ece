"""HTTP servers of the tests on 127.0.0.1: how they are served, and the webhook receiver alerts post to."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TypeVar

ServerT = TypeVar("ServerT", bound=HTTPServer)


@contextmanager
def serving(server: ServerT, name: str) -> Iterator[ServerT]:
    """Serve `server` from a daemon thread named `name`; shut it down and close its socket on exit."""
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _WebhookHandler(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        """Quiet: the tests read `received` instead."""


class WebhookReceiver(HTTPServer):
    """Records every JSON body POSTed to it, as Slack's webhook endpoint would receive it."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _WebhookHandler)
        self.received: list[dict[str, object]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/services/hook"
