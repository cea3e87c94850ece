"""Reaching the Prefect API before a command relies on it, with one clear message when it cannot.

Every command of the pipeline (setup, flow, doctor) needs the API: a configured one
(`PREFECT_API_URL`: a `prefect server start`, Prefect Cloud) or, when none is configured, the
temporary server Prefect starts for the process. Either can fail in ways Prefect reports as a
40-line traceback: the temporary server misses its start-up window on a busy machine, or the
configured server is down or accepts connections but never answers. `require_api` finds out
first, within a bounded time, and raises `PrefectApiError` with the cause and the fix.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import prefect
from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_CLIENT_MAX_RETRIES,
    PREFECT_SERVER_EPHEMERAL_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    get_current_settings,
    temporary_settings,
)
from sqlalchemy.engine import make_url

from dbt_pipeline.errors import PrefectApiError
from dbt_pipeline.interrupts import sigint_ignored

# How long a configured API may take to answer its health check. A healthy server answers in
# milliseconds; one that accepts connections but never answers would otherwise hold the command
# for Prefect's request timeout and retries (minutes).
HEALTH_CHECK_TIMEOUT_SECONDS = 15.0

_PR_SET_PDEATHSIG = 1  # linux/prctl.h

# How many times the temporary server may exit as it starts (a port taken meanwhile, Prefect assumes) before
# the command gives up: a port taken three times in a row is not a race any more.
MOST_SERVER_STARTS = 3

# A Prefect server registers, as it starts, the block types of every Prefect collection installed beside it,
# importing each (prefect-dbt imports dbt, prefect-gcp BigQuery's client and pandas): about 6 CPU-s of every
# start (28 to 21 for a temporary server that creates its database, 12.4 to 6.5 for one that exists). The
# commands' blocks need none of it: saving a block registers its type (`Block.save`), which is also what makes
# them work on a server that has none of our packages installed. The second setting stops Prefect importing
# the collections anyway to decide whether to skip.
WITHOUT_BLOCK_REGISTRATION = {
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
    "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
}

START_A_SERVER = (
    "start a Prefect server once (`uv run prefect server start --background`) and point the commands at it "
    "(`uv run prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`)"
)


def require_api(timeout_seconds: float = HEALTH_CHECK_TIMEOUT_SECONDS) -> str:
    """Make sure the Prefect API answers; return its URL (or a description of the temporary server).

    Raises:
        PrefectApiError: naming the API, what went wrong and what to do.
    """
    url = PREFECT_API_URL.value()
    if not url:
        return _start_temporary_server()
    # One attempt: Prefect's client would retry a timeout five times, with back-off, before giving up.
    with (
        temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}),
        get_client(sync_client=True, httpx_settings={"timeout": timeout_seconds}) as client,
    ):
        problem = client.api_healthcheck()
    if problem is None:
        return str(url)
    if isinstance(problem, httpx.TimeoutException):
        raise PrefectApiError(
            f"The Prefect API at {url} accepted the connection but did not answer within {timeout_seconds:g} s. "
            "Check that it is a Prefect server and that it is not overloaded (`prefect server status`), "
            "or fix PREFECT_API_URL / your Prefect profile (`prefect config view`)."
        )
    raise unreachable(problem)


def unreachable(error: BaseException) -> PrefectApiError:
    """The error for an API call that could not reach the API."""
    api = PREFECT_API_URL.value() or "the temporary Prefect server"
    return PrefectApiError(
        f"Cannot reach the Prefect API at {api}: {str(error).rstrip('.')}. Start it (`prefect server start`), "
        "or fix PREFECT_API_URL / your Prefect profile (`prefect config view`)."
    )


@contextmanager
def api_calls() -> Iterator[None]:
    """API calls that lose the API (refused, dropped, timed out, or a server error once Prefect's retries are
    spent) raise `unreachable`'s error rather than httpx's traceback: a server restarted or a network cut halfway
    through a command. Another answer (a 4xx) is a mistake of ours, and keeps its traceback."""
    try:
        yield
    except httpx.TransportError as error:
        raise unreachable(error) from None
    except PrefectHTTPStatusError as error:
        if error.response.status_code < httpx.codes.INTERNAL_SERVER_ERROR:
            raise
        raise unreachable(error) from None


def _start_temporary_server() -> str:
    """Start the temporary server now, where a failure can be explained, rather than in the first API call.

    Prefect keeps one temporary server per process: the calls that follow reuse this one.
    """
    if not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        raise PrefectApiError(f"No Prefect API is configured (PREFECT_API_URL is not set): {START_A_SERVER}.")
    _check_database_folder()
    timeout = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    try:
        detached_temporary_server().start()
    except ServerExitedAtStartError as error:
        raise PrefectApiError(
            f"Prefect's temporary server exited as it started, {error.starts} times in a row: its error is above "
            f"(a database it cannot open or migrate, in PREFECT_HOME={get_current_settings().home}, is the usual "
            f"cause). Fix it, or set PREFECT_HOME to a new folder, or {START_A_SERVER}."
        ) from None
    except (RuntimeError, httpx.HTTPError, OSError) as error:
        cause = str(error).split(" stdout:", 1)[0]  # Prefect appends the server's whole output
        raise PrefectApiError(
            f"Prefect's temporary server did not start ({cause}). It had {timeout} s "
            "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS; this repository's pyproject.toml sets 180). "
            f"On a busy machine, raise it, or {START_A_SERVER}."
        ) from None
    return "the temporary Prefect server"


def _check_database_folder() -> None:
    """Refuse, before starting it, a temporary server whose SQLite database cannot be written.

    A PREFECT_HOME that cannot be written (a container's read-only or unwritable home directory, a path under a
    file) makes the server exit as it starts, which Prefect reads as a port taken by another process: it starts
    it again, and again, for the whole start-up window (3 minutes of the same traceback, 200 lines each).
    """
    connection_url = get_current_settings().server.database.connection_url
    url = make_url(connection_url.get_secret_value()) if connection_url else None
    if url is None or not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return  # a PostgreSQL database, or one in memory: nothing on this machine's disk to check
    database = Path(url.database).expanduser()
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        problem: str | None = f"its folder cannot be created ({error.strerror})"
    else:
        problem = _not_writable(database)
    if problem is not None:
        raise PrefectApiError(
            f"Prefect's temporary server cannot keep its database at {database}: {problem}. Set PREFECT_HOME to a "
            "folder this user can write (`export PREFECT_HOME=$PWD/.prefect`: Prefect keeps its profiles there too), "
            "then run the command again."
        )


def _not_writable(database: Path) -> str | None:
    """Why this user cannot write `database` (a SQLite file, with its journal beside it), or None."""
    if not os.access(database.parent, os.W_OK | os.X_OK):
        return f"{database.parent} is not writable by this user"
    if database.exists() and not os.access(database, os.R_OK | os.W_OK):
        return "the file is not writable by this user"
    return None


def detached_temporary_server() -> Any:
    """Prefect's temporary server for this process, started in a session of its own.

    Ctrl-C in a terminal reaches the whole foreground process group: Prefect's temporary server
    stopped with the run, which then could not record its final state (it stayed Running, its
    target's slot held). In its own session the server does not get the terminal's signals; it
    still stops when the command exits (Prefect stops it at exit), and on Linux when the command is
    killed outright (the parent-death signal).
    """
    from prefect.server.api.server import SubprocessASGIServer  # only in this mode: it imports the server

    class DetachedTemporaryServer(SubprocessASGIServer):
        starts = 0

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            # Prefect starts the server again, on a new port, each time it exits as it starts (code 3), which it
            # takes for a port another process took meanwhile; for any other failure it would go on until the
            # start-up window closes (3 minutes of the same traceback).
            if self.starts == MOST_SERVER_STARTS:
                raise ServerExitedAtStartError(self.starts)
            # The first start's error is enough to read. (A server started again after a real port race keeps
            # its later errors to itself: a price for a rare case.)
            again = subprocess.DEVNULL if self.starts else None
            self.starts += 1
            # Prefect 3.9's own command and environment, in a new session.
            return subprocess.Popen(
                args=[
                    sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent),
                    "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                    "--port", str(self.port), "--log-level", "error", "--lifespan", "on",
                ],
                env={
                    **os.environ,
                    **WITHOUT_BLOCK_REGISTRATION,
                    "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
                    **get_current_settings().to_environment_variables(exclude_unset=True),
                },
                stdout=again, stderr=again, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )  # fmt: skip

        def stop(self) -> None:
            # At exit, after a Ctrl-C: a second one (pressed again, or forwarded by `uv run` 200 ms after the
            # first when there is no terminal) would break Prefect's wait for the server to stop (at most 5 s,
            # then it is killed) and print a traceback as the command's last words.
            with sigint_ignored():
                super().stop()

    # Prefect keeps one temporary server per process, looked up by port (None: any port).
    return DetachedTemporaryServer()


class ServerExitedAtStartError(RuntimeError):
    """The temporary server exited as it started, again and again (Prefect would start it until its window closed)."""

    def __init__(self, starts: int) -> None:
        super().__init__(f"the temporary server exited as it started, {starts} times in a row")
        self.starts = starts


def _die_with_parent() -> None:
    """In the server's process, before it starts: ask Linux for SIGTERM when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
