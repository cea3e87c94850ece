"""A BigQuery query job that runs until it is cancelled, in front of the emulator: a test double.

Stopping a run on BigQuery must cancel its job (dbt-bigquery calls ``jobs.cancel`` for the jobs
of its open connections when dbt is interrupted), but bqemulator cannot show it: it runs a query
inside ``jobs.insert`` and answers with the job already ``DONE``, so no job is ever ``RUNNING``,
dbt never waits on one, and a cancel has nothing to stop. Google's BigQuery cannot be reached
from here.

:class:`SlowJobsProxy` is an HTTP proxy on loopback that forwards every request to the emulator
unchanged, except for the query jobs whose SQL contains its marker (:data:`HOLD_MARKER`, a SQL
comment). Such a job is *held*: it lives in the proxy only, and is answered as BigQuery answers
for a long query, per its REST reference (``jobs.insert``, ``jobs.get``, ``jobs.getQueryResults``,
``jobs.cancel``):

- ``POST .../projects/{p}/jobs`` (jobs.insert): HTTP 200 and the ``Job`` resource in state
  ``RUNNING`` (the request's ``configuration`` echoed, ``jobType: QUERY``, ``creationTime`` and
  ``startTime``). A second insert of the same job id (a client's retry) gets BigQuery's 409
  ``duplicate``, on which google-cloud-bigquery attaches to the job.
- ``GET .../jobs/{id}`` (jobs.get): the same resource, still ``RUNNING``.
- ``GET .../queries/{id}`` (jobs.getQueryResults): a long poll, as BigQuery's: the answer waits up
  to ``timeoutMs`` (10 s by default, and at most here) and says ``jobComplete: false``; a cancel
  ends the wait at once.
- ``POST .../jobs/{id}/cancel`` (jobs.cancel): recorded, and answered
  ``{"kind": "bigquery#jobCancelResponse", "job": {...}}`` with the job ``DONE`` and its
  ``errorResult`` (and ``errors``) ``{"reason": "stopped", "message": "Job execution was cancelled:
  User requested cancellation"}``. From then on jobs.get answers that same final state, and
  getQueryResults ``jobComplete: true`` with that error in ``errors`` (HTTP 200: BigQuery's error
  table gives ``stopped`` the HTTP code 200).

How the client waits is real: google-cloud-bigquery's ``QueryJob.result()`` loops on jobs.get,
then getQueryResults with ``timeoutMs`` (never more than 10 s), until jobs.get says ``DONE``; it
then raises the job's ``errorResult``. dbt-bigquery runs every query that way in a worker thread,
and when dbt is interrupted its main thread calls ``jobs.cancel`` for each job of each open
connection, then waits for the worker threads to end: a held job that is never cancelled keeps
the process waiting for good, as a real long query would until it finished.

Why a held job is not forwarded: the emulator would run its SQL at once (e.g. create the model's
table) and report it ``DONE``; rewriting that answer to ``RUNNING`` would leave behind the table of
a job that is then cancelled, which BigQuery never does (a cancelled ``CREATE TABLE ... AS`` creates
nothing). Held, the job has no effect at all, as a cancelled one.

Not modelled: a job that finishes by itself (a held job runs until cancelled, whatever its
``jobTimeoutMs``, past which BigQuery would stop it with reason ``timeout``), the ``PENDING``
state, statistics beyond the job's times, ``etag`` and ``user_email``, the ``location`` check
(BigQuery answers 404 for a job asked for in the wrong location), a cancel that arrives too late
to stop the job, and the delay between a cancel and the job's ``DONE`` (BigQuery's cancel "returns
immediately" and the job may stay ``RUNNING`` a moment; here it is ``DONE`` at once).

A cancel of a job the proxy does not hold is recorded and forwarded: the emulator answers it as
BigQuery does for a finished job (200, the job ``DONE``), or 404 for an unknown one. dbt-bigquery
sends such cancels: it cancels every job its interrupted threads ever ran, finished ones included.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import ThreadingHTTPServer
from typing import Any

from tests.emulators.proxy import ForwardingHandler
from tests.loopback import serving

__all__ = ["CANCELLED_MESSAGE", "HOLD_MARKER", "HeldJob", "SlowJobsProxy", "slow_jobs_proxy"]

#: A query job whose SQL contains this runs until it is cancelled.
HOLD_MARKER = "/* hold-this-job */"
#: BigQuery's message for a job stopped by jobs.cancel (its reason: ``stopped``).
CANCELLED_MESSAGE = "Job execution was cancelled: User requested cancellation"
#: getQueryResults' default wait, and the longest here (google-cloud-bigquery never asks more).
LONGEST_POLL_MS = 10_000

_PREFIX = r"^/(?:bigquery/v2/)?projects/(?P<project>[^/]+)"
_JOBS_INSERT = re.compile(_PREFIX + r"/jobs$")
_JOB = re.compile(_PREFIX + r"/jobs/(?P<job>[^/]+)$")
_JOB_CANCEL = re.compile(_PREFIX + r"/jobs/(?P<job>[^/]+)/cancel$")
_QUERY_RESULTS = re.compile(_PREFIX + r"/queries/(?P<job>[^/]+)$")
_JSON = {"Content-Type": "application/json; charset=UTF-8"}


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class HeldJob:
    """A query job the proxy holds (a snapshot: :meth:`SlowJobsProxy.held` returns fresh ones).

    Attributes:
        job_id, project, location: the job's reference, as the client created it.
        query: its SQL.
        configuration: the ``configuration`` of the jobs.insert request.
        created_ms: when it was inserted (ms since the epoch, BigQuery's ``creationTime``).
        inserted_at: when it was inserted, on the clock of ``time.monotonic()``.
        polls: jobs.get and getQueryResults requests answered for it so far.
        cancelled_at: ``time.monotonic()`` of its first jobs.cancel, or None while it runs.
        ended_ms: when it was cancelled (ms since the epoch, BigQuery's ``endTime``), or None.
    """

    job_id: str
    project: str
    location: str
    query: str
    configuration: dict[str, Any]
    created_ms: int
    inserted_at: float
    polls: int = 0
    cancelled_at: float | None = None
    ended_ms: int | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancelled_at is not None

    def resource(self) -> dict[str, Any]:
        """The job's ``Job`` resource, as jobs.insert, jobs.get and jobs.cancel return it."""
        statistics: dict[str, Any] = {"creationTime": str(self.created_ms), "startTime": str(self.created_ms)}
        status: dict[str, Any] = {"state": "RUNNING"}
        if self.ended_ms is not None:
            statistics["endTime"] = str(self.ended_ms)
            status = {"state": "DONE", "errorResult": _stopped(), "errors": [_stopped()]}
        return {
            "kind": "bigquery#job",
            "id": f"{self.project}:{self.location}.{self.job_id}",
            "jobReference": {"projectId": self.project, "jobId": self.job_id, "location": self.location},
            "configuration": {**self.configuration, "jobType": "QUERY"},
            "statistics": statistics,
            "status": status,
        }


def _stopped() -> dict[str, str]:
    return {"reason": "stopped", "message": CANCELLED_MESSAGE}


class _SlowJobsHandler(ForwardingHandler):
    server: SlowJobsProxy

    def handle_request(self, body: bytes) -> None:
        url = urllib.parse.urlsplit(self.path)
        route, params = url.path, dict(urllib.parse.parse_qsl(url.query))
        answer: tuple[int, dict[str, Any]] | None = None
        if self.command == "POST" and (match := _JOBS_INSERT.match(route)):
            answer = self.server.insert(match.group("project"), body)
        elif self.command == "POST" and (match := _JOB_CANCEL.match(route)):
            answer = self.server.cancel(match.group("job"))
        elif self.command == "GET" and (match := _JOB.match(route)):
            answer = self.server.get(match.group("job"))
        elif self.command == "GET" and (match := _QUERY_RESULTS.match(route)):
            answer = self.server.query_results(match.group("job"), params.get("timeoutMs"))
        # A client killed while it waits on a long poll is gone when the answer comes: nothing to tell it.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if answer is None:
                self.forward(body)
            else:
                status, document = answer
                self.answer(status, json.dumps(document).encode(), _JSON)


class SlowJobsProxy(ThreadingHTTPServer):
    """The emulator behind query jobs that run until cancelled; ``url`` is the endpoint to give dbt.

    ``held()`` lists the jobs it holds, ``cancels`` the job id of every jobs.cancel request it got
    (held jobs or not), in order.
    """

    daemon_threads = True

    def __init__(self, upstream: str, marker: str = HOLD_MARKER) -> None:
        super().__init__(("127.0.0.1", 0), _SlowJobsHandler)
        self.upstream = urllib.parse.urlsplit(upstream)
        self.marker = marker
        self._changed = threading.Condition()
        self._jobs: dict[str, HeldJob] = {}
        self._cancels: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def held(self) -> list[HeldJob]:
        """Every job held so far (running or cancelled), in insert order."""
        with self._changed:
            return list(self._jobs.values())

    @property
    def cancels(self) -> list[str]:
        with self._changed:
            return list(self._cancels)

    def wait_for_new_job(self, known: set[str], timeout: float) -> HeldJob | None:
        """The first held job whose id is not in `known`, waiting up to `timeout` s for one; else None."""
        with self._changed:
            self._changed.wait_for(lambda: set(self._jobs) - known, timeout)
            return next((job for job_id, job in self._jobs.items() if job_id not in known), None)

    # -- the API's answers for held jobs; None: forward the request to the emulator ------------------

    def insert(self, project: str, body: bytes) -> tuple[int, dict[str, Any]] | None:
        try:  # a load job's upload is multipart, not JSON: it has no query
            request = json.loads(body)
        except ValueError:
            return None
        configuration = request.get("configuration") or {}
        query = str((configuration.get("query") or {}).get("query") or "")
        if self.marker not in query:
            return None
        reference = request.get("jobReference") or {}
        job_id = str(reference.get("jobId") or f"job_{time.monotonic_ns()}")
        location = str(reference.get("location") or "US")
        with self._changed:
            if job_id in self._jobs:
                message = f"Already Exists: Job {project}:{location}.{job_id}"
                return 409, _error(409, "duplicate", message, "ALREADY_EXISTS")
            project = str(reference.get("projectId") or project)
            job = HeldJob(job_id, project, location, query, configuration, _now_ms(), time.monotonic())
            self._jobs[job_id] = job
            self._changed.notify_all()
            return 200, job.resource()

    def get(self, job_id: str) -> tuple[int, dict[str, Any]] | None:
        with self._changed:
            job = self._polled(job_id)
            return None if job is None else (200, job.resource())

    def query_results(self, job_id: str, timeout_ms: str | None) -> tuple[int, dict[str, Any]] | None:
        wait = min(int(timeout_ms), LONGEST_POLL_MS) if timeout_ms and timeout_ms.isdigit() else LONGEST_POLL_MS
        with self._changed:
            job = self._polled(job_id)
            if job is None:
                return None
            self._changed.wait_for(lambda: self._jobs[job_id].cancelled, wait / 1000)
            job = self._jobs[job_id]
        document: dict[str, Any] = {
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": {"projectId": job.project, "jobId": job.job_id, "location": job.location},
            "jobComplete": job.cancelled,
        }
        if job.cancelled:
            document["errors"] = [_stopped()]
        return 200, document

    def cancel(self, job_id: str) -> tuple[int, dict[str, Any]] | None:
        with self._changed:
            self._cancels.append(job_id)
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if not job.cancelled:
                job = self._jobs[job_id] = replace(job, cancelled_at=time.monotonic(), ended_ms=_now_ms())
                self._changed.notify_all()
            return 200, {"kind": "bigquery#jobCancelResponse", "job": job.resource()}

    def _polled(self, job_id: str) -> HeldJob | None:
        job = self._jobs.get(job_id)
        if job is not None:
            job = self._jobs[job_id] = replace(job, polls=job.polls + 1)
        return job


def _error(code: int, reason: str, message: str, status: str) -> dict[str, Any]:
    error = {"message": message, "domain": "global", "reason": reason}
    return {"error": {"code": code, "message": message, "errors": [error], "status": status}}


@contextmanager
def slow_jobs_proxy(upstream: str, marker: str = HOLD_MARKER) -> Iterator[SlowJobsProxy]:
    """A :class:`SlowJobsProxy` in front of `upstream` (the emulator's URL), served from a thread."""
    with serving(SlowJobsProxy(upstream, marker), "bigquery-slow-jobs-proxy") as proxy:
        yield proxy
