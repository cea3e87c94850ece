"""BigQuery's bytes-billed limit, in front of the emulator: a test double for what bqemulator does not do.

bqemulator bills nothing and ignores a query job's ``maximumBytesBilled``, so a cost guard cannot
trip on it. :class:`BillingProxy` is an HTTP proxy on loopback that forwards every request to the
emulator unchanged, except a query job whose ``maximumBytesBilled`` is below what BigQuery would
bill for it. That it refuses with BigQuery's own answer: HTTP 400, reason ``bytesBilledLimitExceeded``,
message ``Query exceeded limit for bytes billed: <limit>. <needed> or higher required.``

What it bills is BigQuery's floor, not a real scan: on-demand pricing bills at least 10 MB for each
table a query reads, so any query with a ``from`` clause is billed 10 MiB here. (Real BigQuery lets
the job start and fails it; the client library raises the same ``BadRequest`` either way.)

It also records the limit each query job asked for, which is the real proof that the environment's
setting reaches BigQuery's API (the refusal itself is Google's behaviour, faked here), the SQL of each
query job, and each table whose metadata was read (tables.get, which starts no job).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Any

from tests.emulators.proxy import ForwardingHandler
from tests.loopback import serving

#: BigQuery bills at least 10 MB for each table a query references.
MINIMUM_BILLED_PER_TABLE = 10 * 1024 * 1024
_READS_A_TABLE = re.compile(r"\bfrom\b", re.IGNORECASE)


class _ProxyHandler(ForwardingHandler):
    server: BillingProxy

    def handle_request(self, body: bytes) -> None:
        if self.command == "GET":
            self.server.note_metadata_read(self.path)
        refusal = self.server.refusal(self.path, body) if self.command == "POST" else None
        if refusal is None:
            self.forward(body)
        else:
            self.answer(400, json.dumps(refusal).encode(), {"Content-Type": "application/json; charset=UTF-8"})


class BillingProxy(ThreadingHTTPServer):
    """The emulator behind BigQuery's bytes-billed limit; ``url`` is the endpoint to give dbt."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = urllib.parse.urlsplit(upstream)
        self.limits: list[int] = []  # maximumBytesBilled of every query job, as the API received it
        self.queries: list[str] = []  # the SQL of every query job, in the order they came
        self.tables_read: list[str] = []  # the table of every tables.get (its metadata: no job, nothing billed)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def note_metadata_read(self, path: str) -> None:
        table = re.search(r"/datasets/[^/]+/tables/([^/?]+)$", urllib.parse.urlsplit(path).path)
        if table:
            self.tables_read.append(urllib.parse.unquote(table.group(1)))

    def refusal(self, path: str, body: bytes) -> dict[str, Any] | None:
        """BigQuery's error for a query job over its limit, or None to let the request through."""
        if not urllib.parse.urlsplit(path).path.endswith("/jobs"):
            return None
        try:  # a load job's upload is multipart, not JSON: it has no query
            job = json.loads(body)
        except ValueError:
            return None
        query = (job.get("configuration") or {}).get("query") or {}
        if "maximumBytesBilled" not in query:
            return None
        limit = int(query["maximumBytesBilled"])  # an int64 in JSON: a string on the wire
        self.limits.append(limit)
        self.queries.append(query.get("query", ""))
        billed = MINIMUM_BILLED_PER_TABLE if _READS_A_TABLE.search(query.get("query", "")) else 0
        if billed <= limit:
            return None
        message = f"Query exceeded limit for bytes billed: {limit}. {billed} or higher required."
        error = {"message": message, "domain": "global", "reason": "bytesBilledLimitExceeded"}
        return {"error": {"code": 400, "message": message, "errors": [error], "status": "INVALID_ARGUMENT"}}


@contextmanager
def billing_proxy(upstream: str) -> Iterator[BillingProxy]:
    """A :class:`BillingProxy` in front of `upstream` (the emulator's URL), served from a thread."""
    with serving(BillingProxy(upstream), "bigquery-billing-proxy") as proxy:
        yield proxy
