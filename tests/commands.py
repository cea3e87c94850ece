"""The repository's commands called in the test's process, through the `main(argv)` their entry points call.

A cold process per command spends 2-5 s of CPU starting Python and importing Prefect and dbt, as much as a
short pipeline run's own work; on a 2-core machine the suite is CPU-bound, so the setup, the doctor and the
pipeline run here by default (conftest.Workspace). What a process does at exit is done here too: every
queued event and log line is sent before the test reads the API.

The commands stay proven as processes where the process is what a test is about: the README's first command
(tests/test_first_command.py), the setup's own file (tests/test_setup_profiles.py), the cases marked
`process=True` in tests/test_bad_input.py, every run that is sent a signal, killed, paused or loses its API
(started with Popen in tests/test_interrupts.py, test_crashes.py, test_server_faults.py, test_target_slot.py,
test_retries.py, test_concurrency.py; a run that loses its API ends its own process), deployment runs (a real
worker starts them), and any command without PREFECT_API_URL (Prefect's temporary server).
"""

from __future__ import annotations

import importlib
import logging
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

from prefect.context import _temporary_global_settings_context, root_settings_context
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker, PrefectConsoleHandler

TIMEOUT = 600  # as for a command run as a process (conftest.Workspace.run): a hang must not stall the suite

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
    """Interrupt the main thread after `seconds` (a hang must fail its test, not stall the suite).

    With a signal of the tests' own (SIGUSR2, from a timer thread): the commands use SIGALRM for their time
    limits (dbt_pipeline/interrupts.py), and an alarm of ours would be replaced, then cancelled, by theirs.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        msg = f"no answer within {seconds:g} s"
        raise CommandTimeoutError(msg)

    main = threading.main_thread().ident
    assert main is not None
    previous = signal.signal(signal.SIGUSR2, interrupt)
    timer = threading.Timer(seconds, signal.pthread_kill, args=(main, signal.SIGUSR2))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR2, previous)


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

    Prefect reads its settings from the environment once, at import, into a process-wide settings context, which
    every thread without one of its own falls back to (Prefect's log and event workers, dbt's threads): that context
    is made again from `variables` for the block, as Prefect's own test harness does. PREFECT_API_URL must be set
    (with none, Prefect would start its temporary server inside the test's process). Temporary files go to the
    TMPDIR of `variables`, as a process's would. Only in the main thread: another thread would see the change.
    """
    assert threading.current_thread() is threading.main_thread(), "in-process commands run in the main thread only"
    assert variables.get("PREFECT_API_URL"), "an in-process command needs PREFECT_API_URL: run it as a process"
    saved, saved_tempdir = dict(os.environ), tempfile.tempdir
    os.environ.clear()
    os.environ.update(variables)
    tempfile.tempdir = None  # computed again, from TMPDIR
    try:
        with _temporary_global_settings_context(root_settings_context()):
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        tempfile.tempdir = saved_tempdir


@contextmanager
def console_to(stream: StringIO) -> Iterator[None]:
    """Prefect's console handlers write to `stream` for the block: they hold the stderr they were made with."""
    handlers = [
        handler
        for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if isinstance(handler, PrefectConsoleHandler)
    ]
    saved = [(handler.stream, handler.console.file) for handler in handlers]
    for handler in handlers:
        handler.stream = handler.console.file = stream
    try:
        yield
    finally:
        for handler, (stream_, file) in zip(handlers, saved, strict=True):
            handler.stream, handler.console.file = stream_, file


def drained() -> None:
    """What a process does at exit: every queued event and log line sent, the workers stopped. The next command
    gets workers of its own (Prefect keeps one per process, whatever API it was made for)."""
    EventsWorker.drain_all()
    APILogWorker.drain_all()


def run_in_process(command: str, args: Sequence[str], variables: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`command` with `args`, as a process started with the environment `variables` would run it, in this one."""
    stdout, stderr = StringIO(), StringIO()
    with environment(variables), redirect_stdout(stdout), redirect_stderr(stderr), console_to(stderr):
        try:
            code, escaped = call_main(command, args)
        finally:
            drained()
    command_line = [*COMMAND_LINES[command], *args]
    return subprocess.CompletedProcess(command_line, code, stdout.getvalue(), stderr.getvalue() + escaped)
