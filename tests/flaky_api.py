"""A reverse proxy in front of a real Prefect server that answers some requests itself with 503 Service
Unavailable, as a Prefect server on SQLite does to a request that finds the database locked
(`prefect.server.api.server.is_client_retryable_exception`): seen answering a run's heartbeat for 15 s
in a loaded CI run, while the run's own reporting kept the server busy."""

from __future__ import annotations

import http.server
import itertools
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from types import TracebackType

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FlakyApi:
    """`with FlakyApi(api, every=2) as flaky:` answers one call in `every` with 503 and forwards the rest to
    the Prefect API `api`; `flaky.api` is the API URL through it.

    With `lost_from`, the API is lost from the first call it matches (`lost_from(method, path)`): that call and
    every later one have their connection closed without an answer, as by a server that went away."""

    def __init__(
        self, upstream_api: str, every: int = 0, lost_from: Callable[[str, str], bool] = lambda method, path: False
    ) -> None:
        self.upstream = upstream_api.removesuffix("/api")
        self.refused = 0
        self.lost = False
        counter = itertools.count(1)
        lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:  # the CSRF token the client fetches before its first call of a kind always passes
                    proxy.lost = proxy.lost or lost_from(self.command, self.path)
                    refuse = bool(every) and "/csrf-token" not in self.path and next(counter) % every == 0
                    proxy.refused += refuse
                if proxy.lost:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if refuse:
                    self._answer(503, b'{"exception_message": "Service Unavailable"}', {})
                    return
                headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
                request = urllib.request.Request(proxy.upstream + self.path, body or None, headers, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        self._answer(answer.status, answer.read(), dict(answer.headers))
                except urllib.error.HTTPError as error:
                    self._answer(error.code, error.read(), dict(error.headers))

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Type", headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle  # noqa: N815 (http.server names them)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="flaky-api", daemon=True)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def __enter__(self) -> FlakyApi:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
