"""Reaching the Prefect API before a command relies on it, with one clear message when it cannot.

Every command of the pipeline (setup, flow, doctor) needs the API: a configured one
(`PREFECT_API_URL`: a `prefect server start`, Prefect Cloud) or, when none is configured, the
temporary server Prefect starts for the process. Either can fail in ways Prefect reports as a
40-line traceback: the temporary server misses its start-up window on a busy machine, or the
configured server is down or accepts connections but never answers. `require_api` finds out
first, within a bounded time, and raises `PrefectApiError` with the cause and the fix.
"""

from __future__ import annotations

import httpx
from prefect.client.orchestration import get_client
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_CLIENT_MAX_RETRIES,
    PREFECT_SERVER_EPHEMERAL_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

from dbt_pipeline.errors import PrefectApiError

# How long a configured API may take to answer its health check. A healthy server answers in
# milliseconds; one that accepts connections but never answers would otherwise hold the command
# for Prefect's request timeout and retries (minutes).
HEALTH_CHECK_TIMEOUT_SECONDS = 15.0

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
        f"Cannot reach the Prefect API at {api}: {error}. Start it (`prefect server start`), "
        "or fix PREFECT_API_URL / your Prefect profile (`prefect config view`)."
    )


def _start_temporary_server() -> str:
    """Start the temporary server now, where a failure can be explained, rather than in the first API call.

    Prefect keeps one temporary server per process: the calls that follow reuse this one.
    """
    if not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        raise PrefectApiError(f"No Prefect API is configured (PREFECT_API_URL is not set): {START_A_SERVER}.")
    from prefect.server.api.server import SubprocessASGIServer  # only in this mode: it imports the server

    timeout = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    try:
        SubprocessASGIServer().start()
    except (RuntimeError, httpx.HTTPError, OSError) as error:
        cause = str(error).split(" stdout:", 1)[0]  # Prefect appends the server's whole output
        raise PrefectApiError(
            f"Prefect's temporary server did not start ({cause}). It had {timeout} s "
            f"(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS; this repository's pyproject.toml sets 180 when "
            f"commands run from its root). On a busy machine, raise it, or {START_A_SERVER}."
        ) from None
    return "the temporary Prefect server"
