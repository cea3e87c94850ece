"""BigQuery being busy or failing, in front of the emulator: a test double for Google's own behaviour.

bqemulator answers every well-formed request, so a rate limit or a backend error never happens on
it, and Google's BigQuery cannot be reached from here. :class:`FaultProxy` is an HTTP proxy on
loopback that forwards every request to the emulator unchanged, except the requests of query jobs
a :class:`Fault` names. Those it answers as Google does when it is overloaded or failing:

- with Google's JSON error shape, e.g. HTTP 503
  ``{"error": {"code": 503, "message": ..., "errors": [{"reason": "backendError", "message": ...,
  "domain": "global"}], "status": "UNAVAILABLE"}}`` (429 ``rateLimitExceeded``, 500 ``internalError``, or
  any status and reason a test asks for, a 400 included);
- or, for a fault without a reason, with the HTML page Google's front end sends when it could not
  reach the service behind it (``Error 502 (Server Error)!!1``): an unstructured answer.

A fault selects its jobs by a marker (a SQL comment) in the query, and strikes either the
``jobs.insert`` request that creates the job (the job is then never created), or the
``getQueryResults`` requests of the job, which the emulator created and ran (Google accepted the
job, then failed the client polling it). The answers and their bodies are Google's behaviour,
faked; what the clients (google-cloud-bigquery, dbt-bigquery) make of them is real.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Literal

from tests.emulators.proxy import ForwardingHandler
from tests.loopback import serving

__all__ = ["GOOGLE_STATUS", "Fault", "FaultProxy", "Served", "fault_proxy"]

#: The ``status`` Google's JSON errors carry for each HTTP status (google.rpc.Code names).
GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

#: What Google's front end answers when the service behind it failed (trimmed; it is not JSON).
FRONT_END_ERROR_PAGE = """<!DOCTYPE html>
<html lang=en>
  <meta charset=utf-8>
  <title>Error {status} (Server Error)!!1</title>
  <p><b>{status}.</b> <ins>That's an error.</ins>
  <p>The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.
  <ins>That's all we know.</ins>
"""

_JOBS_INSERT = re.compile(r"^/(?:bigquery/v2/)?projects/[^/]+/jobs$")
_QUERY_RESULTS = re.compile(r"^/(?:bigquery/v2/)?projects/[^/]+/queries/(?P<job>[^/?]+)$")


@dataclass(frozen=True)
class Fault:
    """Google's answer to the requests of every query job whose SQL contains `marker`.

    Attributes:
        marker: Text of the query that selects the jobs (a SQL comment such as ``/* fault:busy */``).
        status: The HTTP status of the answer.
        reason: The ``errors[0].reason`` of Google's JSON error; None for the front end's HTML page.
        message: The error's message (Google's own wording, or whatever a test needs it to hold).
        strikes: ``"insert"``: the ``jobs.insert`` request (the job is not created);
            ``"results"``: the job's ``getQueryResults`` requests (the job ran, polling it fails).
    """

    marker: str
    status: int
    reason: str | None
    message: str = ""
    strikes: Literal["insert", "results"] = "insert"

    def answer(self) -> tuple[bytes, str]:
        """The body of the answer and its content type."""
        if self.reason is None:
            return FRONT_END_ERROR_PAGE.format(status=self.status).encode(), "text/html; charset=UTF-8"
        error = {"reason": self.reason, "message": self.message, "domain": "global"}
        status = GOOGLE_STATUS.get(self.status, "UNKNOWN")
        document = {"error": {"code": self.status, "message": self.message, "errors": [error], "status": status}}
        return json.dumps(document).encode(), "application/json; charset=UTF-8"


@dataclass(frozen=True)
class Served:
    """One request the proxy answered with a fault, rather than forwarding it."""

    method: str
    path: str
    fault: Fault


class _FaultHandler(ForwardingHandler):
    server: FaultProxy

    def handle_request(self, body: bytes) -> None:
        fault = self.server.fault_for(self.command, self.path, body)
        if fault is None:
            self.forward(body)
            return
        self.server.record(Served(self.command, self.path, fault))
        payload, content_type = fault.answer()
        self.answer(fault.status, payload, {"Content-Type": content_type})


class FaultProxy(ThreadingHTTPServer):
    """The emulator behind Google's error answers; ``url`` is the endpoint to give a client or dbt."""

    daemon_threads = True

    def __init__(self, upstream: str, faults: Sequence[Fault]) -> None:
        super().__init__(("127.0.0.1", 0), _FaultHandler)
        self.upstream = urllib.parse.urlsplit(upstream)
        self.faults = tuple(faults)
        self._lock = threading.Lock()
        self._jobs: dict[str, Fault] = {}  # job id -> the fault striking its getQueryResults
        self._served: list[Served] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def served(self) -> list[Served]:
        """Every fault answered so far, in order."""
        with self._lock:
            return list(self._served)

    def record(self, served: Served) -> None:
        with self._lock:
            self._served.append(served)

    def fault_for(self, method: str, path: str, body: bytes) -> Fault | None:
        """The fault to answer this request with, or None to forward it to the emulator."""
        route = urllib.parse.urlsplit(path).path
        if method == "POST" and _JOBS_INSERT.match(route):
            return self._on_insert(body)
        results = _QUERY_RESULTS.match(route)
        if method == "GET" and results:
            with self._lock:
                return self._jobs.get(results.group("job"))
        return None

    def _on_insert(self, body: bytes) -> Fault | None:
        try:  # a load job's upload is multipart, not JSON: it has no query
            job = json.loads(body)
        except ValueError:
            return None
        query = str(((job.get("configuration") or {}).get("query") or {}).get("query") or "")
        fault = next((fault for fault in self.faults if fault.marker in query), None)
        if fault is None or fault.strikes == "insert":
            return fault
        job_id = (job.get("jobReference") or {}).get("jobId")
        if job_id:
            with self._lock:
                self._jobs[str(job_id)] = fault
        return None


@contextmanager
def fault_proxy(upstream: str, faults: Sequence[Fault]) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` in front of `upstream` (the emulator's URL), served from a thread."""
    with serving(FaultProxy(upstream, faults), "bigquery-fault-proxy") as proxy:
        yield proxy
