"""A TCP proxy on loopback in front of a server, which can go silent: a hung server, a black-holing network.

Until `go_silent()` it forwards every connection to the server, byte for byte (HTTP, websockets). Then
it still accepts connections and reads what they send, but never answers and never closes them: the
connections already open go silent too (what they send is dropped, what the server sends back is
dropped), so a client with a kept-alive connection hangs like a new one. `forward()` closes the
silenced connections (a proxy restarted) and forwards new ones again. `slow_down(seconds)` holds each piece of the
server's answers (what one read returns: an answer's headers and body may come apart) that long before it
is passed on, as a server too busy to answer at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

_CHUNK = 65536


class _Connection:
    """One client connection and, unless it was accepted while silent, its connection to the server."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client, self.upstream = client, upstream
        self.silenced = upstream is None

    def silence(self) -> None:
        """Answer nothing more, and let go of the server's side."""
        self.silenced = True
        if self.upstream is not None:
            _close(self.upstream)

    def close(self) -> None:
        _close(self.client)
        if self.upstream is not None:
            _close(self.upstream)


class SilentProxy:
    """`with SilentProxy(port) as proxy:` forwards 127.0.0.1:`proxy.port` to 127.0.0.1:`port`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)  # the accept loop checks for close() this often
        self.silent = False
        self.dropped_bytes = 0  # what clients sent while the proxy was silent: proof they tried
        self.answer_delay = 0.0
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._closed = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="silent-proxy", daemon=True)

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    @property
    def api(self) -> str:
        """The Prefect API URL through the proxy."""
        return f"http://127.0.0.1:{self.port}/api"

    def __enter__(self) -> SilentProxy:
        self._acceptor.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._closed.set()
        self._acceptor.join(timeout=5)
        self.listener.close()
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    def go_silent(self) -> None:
        with self._lock:
            self.silent = True
            for connection in self._connections:
                connection.silence()

    def slow_down(self, seconds: float) -> None:
        """Pass each piece of the server's answers on `seconds` after it came (0: at once)."""
        self.answer_delay = seconds

    def forward(self) -> None:
        with self._lock:
            self.silent = False
            self.answer_delay = 0.0
            for connection in [each for each in self._connections if each.silenced]:
                connection.close()
                self._connections.discard(connection)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                upstream = None
                if not self.silent:
                    try:
                        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
                    except OSError:
                        _close(client)  # as a client would see the server itself: refused
                        continue
                connection = _Connection(client, upstream)
                self._connections.add(connection)
            self._pump(connection, connection.client, connection.upstream)
            if upstream is not None:
                self._pump(connection, upstream, client)

    def _pump(self, connection: _Connection, source: socket.socket, sink: socket.socket | None) -> None:
        def run() -> None:
            while True:
                try:
                    data = source.recv(_CHUNK)
                except OSError:
                    data = b""
                if not data:  # closed: by its peer, or by the proxy (silenced, forward(), exit)
                    if not connection.silenced or source is connection.client:
                        with self._lock:
                            self._connections.discard(connection)
                        connection.close()
                    return
                if connection.silenced:
                    if source is connection.client:
                        with self._lock:
                            self.dropped_bytes += len(data)
                    continue
                if source is not connection.client and self.answer_delay:
                    time.sleep(self.answer_delay)
                try:
                    assert sink is not None
                    sink.sendall(data)
                except OSError:
                    if connection.silenced:  # silenced meanwhile: go on reading the client, answering nothing
                        continue
                    connection.close()
                    return

        threading.Thread(target=run, name="silent-proxy-pump", daemon=True).start()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
