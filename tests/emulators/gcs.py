"""An offline Google Cloud Storage for the tests: a test double, not GCS.

Google's endpoints cannot be reached from here, so the state store's ``gs://`` side is tested against
**gcp-storage-emulator** (PyPI, in the project's dev group): GCS's JSON API (objects, buckets, simple,
multipart and resumable uploads) as a real HTTP server on loopback, in memory. gcsfs talks to it
unchanged, given its URL as the endpoint:

- fsspec / gcsfs: ``storage_options={"endpoint_url": "http://127.0.0.1:<port>", "token": "anon"}``
  (see :meth:`GcsEmulator.storage_options`); ``STORAGE_EMULATOR_HOST`` set to the URL works too.

Each :class:`GcsEmulator` is a process of its own (the emulator's request handler and storage, served
by ``http.server`` as the emulator's own server does), on a port the OS picks, in a process group of
its own, with its log in a temporary folder.

Known gaps (gcp-storage-emulator 2026.7.19; what passes on it can still fail on GCS):

- No authentication or IAM: any token, or none, is accepted and nothing is ever forbidden, so
  permission errors cannot be produced here.
- One request at a time (a single-threaded server), like the emulator's own ``start`` command.

Usage, without pytest::

    from tests.emulators.gcs import GcsEmulator

    with GcsEmulator() as emulator:
        emulator.start()
        bucket = emulator.create_bucket("my-bucket")

With pytest, the session-scoped fixture ``gcs_emulator`` (registered by :mod:`tests.emulators`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.emulators.processes import end_process_group

__all__ = ["GcsEmulator", "GcsEmulatorError", "gcs_emulator", "running_gcs_emulator", "unique_bucket"]

_LOOPBACK = "127.0.0.1"

# Run in the emulator's process: serve the emulator's handler on a port the OS picks (0), print that port
# as one JSON line, then serve until SIGTERM. The emulator's `start` command takes a port but never says
# which one it bound, so it cannot be given 0.
_SERVE = """
import json, sys
from functools import partial
from http.server import HTTPServer
from gcp_storage_emulator.server import RequestHandler
from gcp_storage_emulator.storage import Storage

httpd = HTTPServer((sys.argv[1], 0), partial(RequestHandler, Storage(use_memory_fs=True)))
print(json.dumps({"port": httpd.server_address[1]}), flush=True)
httpd.serve_forever()
"""


class GcsEmulatorError(RuntimeError):
    """The emulator could not be started or reached."""


class GcsEmulator:
    """One gcp-storage-emulator process on loopback, in memory.

    ``start()`` returns its URL (``http://127.0.0.1:<port>``); ``stop()`` ends the process group and
    removes the temporary folder (its log). Usable as a context manager (stops on exit).
    """

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.endpoint: str | None = None
        self.workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path | None:
        """The emulator's stderr (its request log), while the work dir exists."""
        return None if self.workdir is None else self.workdir / "gcs-emulator.log"

    def start(self) -> str:
        """Start the emulator; return its URL once it answers. Raises GcsEmulatorError (with its log)."""
        if self._process is not None:
            raise GcsEmulatorError(f"already started, at {self.endpoint}")
        self.workdir = Path(tempfile.mkdtemp(prefix="gcs-emulator-"))
        try:
            return self._start(self.workdir)
        except BaseException:
            self.stop()
            raise

    def _start(self, workdir: Path) -> str:
        assert self.log_path is not None
        environment = {name: value for name, value in os.environ.items() if name != "STORAGE_EMULATOR_HOST"}
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _SERVE, _LOOPBACK],
                cwd=workdir,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # its own process group, ended as a whole by stop()
            )
        deadline = time.monotonic() + self.startup_timeout
        port = self._read_port(deadline)
        self.endpoint = f"http://{_LOOPBACK}:{port}"
        self._wait_healthy(deadline)
        return self.endpoint

    def _log_tail(self, size: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-size:].decode("utf-8", "replace")

    def _read_port(self, deadline: float) -> int:
        assert self._process is not None
        assert self._process.stdout is not None
        stdout = self._process.stdout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 0.1)
            if ready:
                line = stdout.readline()
                if line:
                    port = json.loads(line)["port"]
                    assert isinstance(port, int)
                    return port
            if self._process.poll() is not None:
                raise GcsEmulatorError(
                    f"the GCS emulator exited with {self._process.returncode} while starting; log:\n{self._log_tail()}"
                )
        raise GcsEmulatorError(f"the GCS emulator did not start within {self.startup_timeout:g} s:\n{self._log_tail()}")

    def _wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.endpoint}/storage/v1/b", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.05)
        raise GcsEmulatorError(f"the GCS emulator at {self.endpoint} did not answer; log:\n{self._log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """End the emulator's process group (SIGTERM, then SIGKILL after ``timeout`` s) and remove its
        temporary folder. Idempotent; safe after a failed ``start()``."""
        process, self._process = self._process, None
        if process is not None:
            end_process_group(process, timeout)
            if process.stdout is not None:
                process.stdout.close()
        self.endpoint = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> GcsEmulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- talking to it -----------------------------------------------------------------------------

    def _require_started(self) -> str:
        if self.endpoint is None:
            raise GcsEmulatorError("the emulator is not started")
        return self.endpoint

    def storage_options(self) -> dict[str, Any]:
        """fsspec's options for gcsfs on the emulator: its URL, and no credentials."""
        return {"endpoint_url": self._require_started(), "token": "anon"}

    def create_bucket(self, name: str) -> str:
        """Create the bucket `name` (the JSON API's buckets.insert) and return its name."""
        request = urllib.request.Request(
            f"{self._require_started()}/storage/v1/b?project=test-project",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise GcsEmulatorError(f"creating bucket {name!r} answered {response.status}")
        return name


def unique_bucket(prefix: str = "test") -> str:
    """A bucket name no other test of the session uses (buckets live as long as the emulator)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def running_gcs_emulator(**options: Any) -> Iterator[GcsEmulator]:
    """A started :class:`GcsEmulator`, stopped on exit: the body of a session fixture."""
    emulator = GcsEmulator(**options)
    try:
        emulator.start()
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """A running GCS emulator for the session (~0.1 s to start); give each test a bucket of its own
    (:func:`unique_bucket`, :meth:`GcsEmulator.create_bucket`). Stopped when the session ends."""
    with running_gcs_emulator() as emulator:
        yield emulator


def main() -> None:
    """`python -m tests.emulators.gcs [BUCKET...]`: run one until Ctrl-C, for trying things by hand."""
    with running_gcs_emulator() as emulator:
        for bucket in sys.argv[1:]:
            emulator.create_bucket(bucket)
        print(f"GCS emulator at {emulator.endpoint}  (Ctrl-C stops it)", flush=True)
        print(f"export STORAGE_EMULATOR_HOST={emulator.endpoint}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
