"""Which failures are worth another attempt, decided from what was raised, never from its text.

A retry only helps when the warehouse or the network was unavailable: a held lock, a refused or
dropped connection, a rate limit, a server error. A SQL error fails the same way every time, and its
message quotes the SQL, which can hold any word or number ("503", "timeout", "rate limit"); so the
decision reads exception classes and the codes the drivers attach to them, walking the chain of
causes that dbt keeps when it wraps a driver's error (`raise DbtRuntimeError(...) from error`).

A driver's module is only consulted if it is already imported: an exception of a driver that was
never imported cannot be in the chain, and a DuckDB run never pays for importing Google's clients.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

# HTTP statuses that mean "try again later": rate limited, or the server failed or was unavailable.
TRANSIENT_HTTP_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# BigQuery's error reasons worth a retry (cloud.google.com/bigquery/docs/error-messages).
TRANSIENT_BIGQUERY_REASONS = frozenset(
    {"rateLimitExceeded", "jobRateLimitExceeded", "backendError", "internalError", "jobBackendError",
     "jobInternalError", "tableUnavailable"}
)  # fmt: skip

# PostgreSQL SQLSTATEs of a busy or restarting server rather than a wrong statement: class 08
# (connection exception) plus serialization failure, deadlock, too many connections, lock not
# available, and the server shutting down or starting up (postgresql.org/docs/current/errcodes-appendix.html).
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "53300", "55P03", "57P01", "57P02", "57P03"})

# DuckDB raises its lock conflict as a plain IOException, with no code: the engine's own message
# starts with this, before any quoted SQL (which comes after, on a "LINE n:" line).
DUCKDB_LOCK_CONFLICT = "IO Error: Could not set lock on file"


def is_transient(error: BaseException) -> bool:
    """Whether `error`, or an exception it was raised from, says the warehouse was unavailable."""
    return any(_is_transient_link(link) for link in causes(error))


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and the exceptions it was raised from or while handling, innermost last, each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_transient_link(error: BaseException) -> bool:
    return isinstance(error, ConnectionError) or any(rule(error) for rule in _DRIVER_RULES)


def _loaded(module: str) -> Any:
    """The module if something already imported it, else None."""
    return sys.modules.get(module)


def _duckdb(error: BaseException) -> bool:
    duckdb = _loaded("duckdb")
    if duckdb is None:
        return False
    if isinstance(error, duckdb.IOException):
        return str(error).startswith(DUCKDB_LOCK_CONFLICT)
    if isinstance(error, duckdb.HTTPException):  # httpfs reading object storage
        return getattr(error, "status_code", None) in TRANSIENT_HTTP_STATUSES
    return False


def _psycopg2(error: BaseException) -> bool:
    psycopg2 = _loaded("psycopg2")
    if psycopg2 is None or not isinstance(error, psycopg2.Error):
        return False
    code = error.pgcode
    if code is None:
        # No SQLSTATE: libpq could not reach the server, or lost it mid-statement. An error in a
        # statement always carries its SQLSTATE.
        return isinstance(error, psycopg2.OperationalError | psycopg2.InterfaceError)
    return code.startswith("08") or code in TRANSIENT_SQLSTATES


def _google_api(error: BaseException) -> bool:
    exceptions = _loaded("google.api_core.exceptions")
    if exceptions is None:
        return False
    if isinstance(error, exceptions.RetryError):  # the client's own retries ran out on transient errors
        return True
    if not isinstance(error, exceptions.GoogleAPICallError):
        return False
    reasons = {item.get("reason") for item in error.errors or () if isinstance(item, dict)}
    if reasons:
        return reasons <= TRANSIENT_BIGQUERY_REASONS
    return error.code in TRANSIENT_HTTP_STATUSES


def _google_transport(error: BaseException) -> bool:
    auth = _loaded("google.auth.exceptions")
    return auth is not None and isinstance(error, auth.TransportError)


def _requests(error: BaseException) -> bool:
    requests = _loaded("requests.exceptions")
    return requests is not None and isinstance(error, requests.ConnectionError)


_DRIVER_RULES: tuple[Callable[[BaseException], bool], ...] = (
    _duckdb,
    _psycopg2,
    _google_api,
    _google_transport,
    _requests,
)
