"""HTTP servers of the tests on 127.0.0.1: how they are served, the webhook receiver alerts post to, and
Google's OAuth token endpoint (unreachable from here) that a service-account key is pointed at."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
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


class _TokenHandler(BaseHTTPRequestHandler):
    """Answers every POST with an access token, as https://oauth2.googleapis.com/token does."""

    server: TokenEndpoint

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.server.requests.append(dict(urllib.parse.parse_qsl(body)))
        payload = json.dumps({"access_token": "test-token", "expires_in": 3600, "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read `requests` instead."""


class TokenEndpoint(ThreadingHTTPServer):
    """A fake of Google's token endpoint: ``url`` goes into a key's ``token_uri``; ``requests`` are the forms POSTed."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TokenHandler)
        self.requests: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/token"
