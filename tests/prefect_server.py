"""A real `prefect server start` on loopback that a test can stop, kill and start again.

The session's server (the `prefect_api` fixture) uses it; tests that restart a server mid-run
start one of their own, on the same port and PREFECT_HOME each time, as an operator would.

A server started on a new PREFECT_HOME first creates its database: about 10 CPU-s of migrations,
half of its start-up, paid by some 20 servers in a test session. The tests' servers start from a copy
of one database migrated once per session (`migrated_database`); the README's first command, tested
on a fresh PREFECT_HOME in test_first_command, still creates its own.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dbt_pipeline.prefect_api import WITHOUT_BLOCK_REGISTRATION

PREFECT = Path(sys.executable).with_name("prefect")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


DATABASE = "prefect.db"  # in PREFECT_HOME: Prefect's default database, SQLite


def server_environment(home: Path) -> dict[str, str]:
    """This process's environment for a Prefect server (or its CLI) on `home`, with no API of another server."""
    environment = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    environment.pop("PREFECT_API_URL", None)
    return environment


def migrated_database(directory: Path) -> Path:
    """An empty Prefect database at the installed Prefect's latest schema, in `directory`: made once, by the
    first caller (a lock file keeps concurrent test processes from making it twice), then reused."""
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / DATABASE
    with (directory / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not database.is_file():
            building = directory / "building"
            shutil.rmtree(building, ignore_errors=True)
            building.mkdir()
            subprocess.run(
                [str(PREFECT), "server", "database", "upgrade", "-y"],
                env=server_environment(building), check=True, capture_output=True, timeout=600,
            )  # fmt: skip
            (building / DATABASE).rename(database)
    return database


class PrefectServer:
    """`prefect server start` in its own process group, its log in PREFECT_HOME/server.log.

    With `database`, a new PREFECT_HOME starts from a copy of it (see `migrated_database`), which the server
    does not check again. It registers no block types as it starts (`WITHOUT_BLOCK_REGISTRATION`): as on a
    server whose image has none of our packages, the commands' blocks must register their own types.
    """

    def __init__(self, home: Path, port: int | None = None, *, database: Path | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.database = database
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = 90) -> str:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.database is not None and not (self.home / DATABASE).exists():
            shutil.copyfile(self.database, self.home / DATABASE)
        environment = {**server_environment(self.home), **WITHOUT_BLOCK_REGISTRATION}
        if self.database is not None:
            environment["PREFECT_API_DATABASE_MIGRATE_ON_START"] = "false"  # a copy of a migrated database
        with (self.home / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._wait_healthy(timeout)
        return self.api

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM the server (SIGKILL with `kill`, or if it does not stop within 15 s)."""
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def _wait_healthy(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited with {self.process.returncode}: see {self.home}/server.log")
            try:
                with urllib.request.urlopen(f"{self.api}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"prefect server not healthy after {timeout}s")
