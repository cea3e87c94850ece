"""A throwaway PostgreSQL server on loopback, in a temporary directory, for the tests.

It is a real server (the Debian/official binaries: initdb, pg_ctl), started with password
authentication so that the password path of the pipeline is exercised. PostgreSQL refuses to
run as root, so under root it runs as the `postgres` system user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BINARY_DIRS = [Path("/usr/local/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]


@dataclass(frozen=True)
class PostgresServer:
    """How to reach the server."""

    host: str
    port: int
    user: str
    password: str
    database: str


def _binary(name: str) -> str:
    found = shutil.which(name) or next((str(d / name) for d in BINARY_DIRS if (d / name).is_file()), None)
    if found is None:
        msg = f"PostgreSQL's {name} not found: install the server (apt-get install postgresql)"
        raise RuntimeError(msg)
    return found


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def running_postgres(*, user: str = "dbt", password: str = "pg-test-password") -> Iterator[PostgresServer]:
    """Start a server in a temporary directory; stop it and remove its data when the block exits.

    The directory is made directly under the system temp dir: pytest's own temp dirs are private
    to root, and the server runs as the `postgres` user.
    """
    directory = Path(tempfile.mkdtemp(prefix="dbt-pipeline-postgres-"))
    data, socket_dir, password_file = directory / "data", directory / "socket", directory / "password"
    socket_dir.mkdir()
    password_file.write_text(password)
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
        for path in (socket_dir, password_file):
            shutil.chown(path, "postgres")
    initdb = [_binary("initdb"), "-D", str(data), "-U", user, "--auth=scram-sha-256", f"--pwfile={password_file}"]
    subprocess.run(_as_server_user(initdb), check=True, capture_output=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {socket_dir}"
    pg_ctl = _binary("pg_ctl")
    start = [pg_ctl, "-D", str(data), "-o", options, "-l", str(directory / "server.log"), "-w", "-t", "60", "start"]
    subprocess.run(_as_server_user(start), check=True, capture_output=True)
    try:
        yield PostgresServer("127.0.0.1", port, user, password, "postgres")
    finally:
        subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]), capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)
