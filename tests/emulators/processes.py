"""Ending a test double that runs as a process group of its own (the emulators)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any


def end_process_group(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM the group `process` leads, SIGKILL it if still there after `timeout` s, and reap it.

    A group that is already gone is fine: stopping is idempotent, also after a failed start.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
