"""A real `prefect worker` for the tests that run deployments, started and always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import Workspace
from tests.prefect_server import PREFECT


@dataclass(frozen=True)
class Worker:
    """A worker process and the file its output goes to."""

    process: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        """The end of the worker's output, to explain a failed assertion."""
        return "\n--- worker log (tail) ---\n" + self.log.read_text(errors="replace")[-4000:]


@contextmanager
def running_worker(workspace: Workspace, pool: str) -> Iterator[Worker]:
    """`prefect worker start --pool POOL` with the workspace's environment (its flow runs inherit it).

    It polls every second instead of 10 (test speed only) and starts outside the repository: the code
    is found by the pull step `prefect deploy` recorded, not by the worker's directory. It runs in a
    process group of its own (a worker started otherwise ignores the first SIGTERM), stopped on exit.
    """
    log = workspace.root / "worker.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(PREFECT), "worker", "start", "--pool", pool],
            cwd=workspace.root, env={**workspace.env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    worker = Worker(process, log)
    try:
        assert process.poll() is None, worker.tail()
        yield worker
    finally:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM the process group of `process` (started with start_new_session=True), SIGKILL it after `timeout`."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
