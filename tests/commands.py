"""The repository's commands called in the test's process, through the `main(argv)` their entry points call.

A cold process per command spends 3-5 s of CPU importing Prefect, prefect-gcp and dbt to do a second's
work; on a 2-core machine the suite is CPU-bound, so the fixtures that only need a command's effect (blocks
created, a profile written) call it here. The commands stay proven as processes where that is what a test
is about: the README's first command (tests/test_first_command.py), the setup's own file
(tests/test_setup_profiles.py) and the cases marked `process=True` in tests/test_bad_input.py.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import tempfile
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from io import StringIO
from types import FrameType

from prefect.settings import PREFECT_API_URL, temporary_settings

TIMEOUT = 300  # a preflight failure takes seconds; a hang must not stall the suite

# Each command's `main(argv)` (what `sys.exit(main())` calls) and its command line as a user types it.
MAINS = {
    "setup": "infrastructure.setup_profiles.cli",
    "pipeline": "prefect_flows.pipeline",
    "doctor": "infrastructure.doctor.checks",
}
COMMAND_LINES = {
    "setup": ("-m", "infrastructure.setup_profiles"),
    "pipeline": ("prefect_flows/pipeline.py",),
    "doctor": ("-m", "infrastructure.doctor"),
}


class CommandTimeoutError(Exception):
    """A command run in this process took longer than TIMEOUT."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the main thread after `seconds` (a hang must fail its test, not stall the suite)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        msg = f"no answer within {seconds:g} s"
        raise CommandTimeoutError(msg)

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def call_main(command: str, args: Sequence[str]) -> tuple[int, str]:
    """Call `command`'s main(args) as its entry point does; return the exit code, and the traceback if one escaped.

    What `sys.exit(main())` would turn into a process's exit: the code main returns, or the one
    SystemExit carries (argparse exits 2), or 1 and a traceback on stderr for any other exception.
    """
    try:
        with time_limit(TIMEOUT):
            code = importlib.import_module(MAINS[command]).main(list(args))
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0, ""
        return 1, f"{exit_.code}\n"
    except Exception:
        return 1, traceback.format_exc()
    return code, ""


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """`os.environ` as `variables` for the block (what a process started with them would see), then as it was.

    PREFECT_API_URL also goes through Prefect's settings, which Prefect reads once, at import; it must be set (with
    none, Prefect would start its temporary server inside the test's process). Temporary files go to the TMPDIR of
    `variables`, as a process's would. Only in the main thread: another thread would see the environment change.
    """
    assert threading.current_thread() is threading.main_thread(), "in-process commands run in the main thread only"
    api = variables.get("PREFECT_API_URL")
    assert api, "an in-process command needs PREFECT_API_URL: run the command as a process to test without one"
    saved, saved_tempdir = dict(os.environ), tempfile.tempdir
    os.environ.clear()
    os.environ.update(variables)
    tempfile.tempdir = None  # computed again, from TMPDIR
    try:
        with temporary_settings({PREFECT_API_URL: api}):
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        tempfile.tempdir = saved_tempdir


def run_in_process(command: str, args: Sequence[str], variables: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`command` with `args`, as a process started with the environment `variables` would run it, in this one."""
    stdout, stderr = StringIO(), StringIO()
    with environment(variables), redirect_stdout(stdout), redirect_stderr(stderr):
        code, escaped = call_main(command, args)
    command_line = [*COMMAND_LINES[command], *args]
    return subprocess.CompletedProcess(command_line, code, stdout.getvalue(), stderr.getvalue() + escaped)
