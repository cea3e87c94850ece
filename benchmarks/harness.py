"""What the benchmark scripts share: a local Prefect server of their own, started and stopped cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@contextmanager
def local_prefect_server(home: Path) -> Iterator[tuple[int, str]]:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME; yields (pid, API URL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/api"
        _wait_until_healthy(url)
        yield server.pid, url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own subprocesses too
        server.wait(timeout=30)


def _wait_until_healthy(url: str) -> None:
    for _ in range(180):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("prefect server did not start within 90 s")
