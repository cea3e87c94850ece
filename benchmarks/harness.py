"""What the benchmark scripts share: where the repository is, and a local Prefect server of their own.

The server is the tests' own helper (tests/prefect_server.py): one way to start and stop a server.
Run the benchmarks as modules from the repository root (`uv run python -m benchmarks.bench_pipeline`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.prefect_server import PrefectServer

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# A busy 2-core machine migrating a fresh database needs more than the tests' usual 90 s.
SERVER_START_TIMEOUT_SECONDS = 180


@contextmanager
def local_prefect_server(home: Path) -> Iterator[tuple[int, str]]:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME; yields (pid, API URL)."""
    server = PrefectServer(home)
    api = server.start(timeout=SERVER_START_TIMEOUT_SECONDS)
    assert server.process is not None
    try:
        yield server.process.pid, api
    finally:
        server.stop()
