"""The temporary server's life in the command's process (dbt_pipeline/prefect_api.py).

Starting the server itself is tested end to end (test_first_command, test_interrupts); here, its stop at
exit, with a real process standing in for the server so that the test does not pay a server's start-up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import IO

import pytest

from dbt_pipeline.prefect_api import detached_temporary_server

# A server that takes a second to stop once asked, as uvicorn does when it finishes its requests. It says when
# it is ready (its trap set: a TERM sent before would kill it at once) and when it starts stopping.
SLOW_TO_STOP = "trap 'echo stopping; sleep 1; exit 0' TERM; echo ready; while :; do sleep 0.1; done"


@pytest.fixture
def server() -> Iterator[object]:
    server = detached_temporary_server()
    server.server_process = subprocess.Popen(["bash", "-c", SLOW_TO_STOP], stdout=subprocess.PIPE, text=True)
    assert server.server_process.stdout.readline() == "ready\n"
    yield server
    if server.server_process is not None:
        server.server_process.kill()
        server.server_process.wait()


def _ctrl_c_once_stopping(server_output: IO[str]) -> None:
    """Ctrl-C to this process while the server is stopping, so while the command waits for it."""
    if server_output.readline() == "stopping\n":
        os.kill(os.getpid(), signal.SIGINT)


def test_a_second_ctrl_c_does_not_break_the_wait_for_the_server_to_stop(server: object) -> None:
    """After a Ctrl-C the command exits, and Prefect stops its temporary server at exit, waiting for it. A second
    Ctrl-C then (uv forwards the first one again, 200 ms later, when there is no terminal) used to interrupt that
    wait with a traceback as the command's last words. It is ignored for the wait, and only for the wait."""
    assert threading.current_thread() is threading.main_thread(), "signal handlers are the main thread's"
    process = server.server_process  # type: ignore[attr-defined]
    interrupts: list[int] = []

    def record(signum: int, frame: object) -> None:
        interrupts.append(signum)

    # A Ctrl-C that got through is recorded, rather than ending the test's own process.
    handler_before = signal.signal(signal.SIGINT, record)
    try:
        second_ctrl_c = threading.Thread(target=_ctrl_c_once_stopping, args=(process.stdout,))
        second_ctrl_c.start()
        server.stop()  # type: ignore[attr-defined]
        second_ctrl_c.join()
        assert process.returncode == 0, "the server was killed rather than let stop"
        assert interrupts == [], "the Ctrl-C sent during the wait reached the command"
        assert signal.getsignal(signal.SIGINT) is record, "the command's own Ctrl-C handling was not given back"
    finally:
        signal.signal(signal.SIGINT, handler_before)
