"""Stopping a dbt command on a signal: the warehouse query is cancelled and the signal still wins.

dbt knows one way to be stopped: a `KeyboardInterrupt` in its main thread, on which it cancels the
open queries (DuckDB's interrupt, PostgreSQL's `pg_cancel_backend`, BigQuery's job cancel), writes
its run results and re-raises. A SIGTERM (a worker stopping the run, `prefect flow-run cancel`,
a container shutting down) raises Prefect's `TerminationSignal` instead, which dbt does not know:
the query went on, dbt returned the signal as a failure of the command, and the run ended Failed
with a misleading error. And dbt's programmatic entry point turns any exception, Ctrl-C included,
into a failed result rather than letting it through.

So, while a dbt command runs in the main thread, SIGTERM is delivered to dbt as a `KeyboardInterrupt`
(`StopRequested`), and afterwards the interruption is raised again as what it was: Prefect's own
SIGTERM handler runs (a `TerminationSignal`, which Prefect turns into Cancelled when the run was
cancelled, Crashed otherwise), and Ctrl-C stays a `KeyboardInterrupt`.

One stop at a time: a signal that repeats the one being handled is absorbed, not raised into dbt's
cancel of the queries (which it would break: the query ran on, the connection stayed busy, and the
run ended Failed with DuckDB's "connection is busy"). `uv run` passes a signal on to the command it
runs, so a command whose whole process group is signalled (a terminal closing, `kill -- -PGID`,
systemd stopping a unit) receives it twice.

SIGHUP, which a terminal or an SSH session sends as it closes, would end the process where it stands:
the warehouse query left running (a BigQuery job is billed to its end), the target held until a take-over,
the private profile left on disk, no alert. The command line hands it to the SIGTERM handler of the moment
(`signals_end_the_command`), so that it is a stop like any other.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, NoReturn

SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class TimeLimitReached(KeyboardInterrupt):
    """A dbt command's time limit, delivered to dbt as the interrupt it handles (it cancels its queries)."""


class StopRequested(KeyboardInterrupt):
    """A signal other than Ctrl-C, delivered to dbt as the interrupt it handles."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def sigterm_interrupts_dbt() -> Iterator[Callable[[BaseException | None], None]]:
    """Deliver SIGTERM to dbt as `StopRequested` for the duration of the block.

    Yields `reraise(error)`: given the exception dbt returned, raise the interruption it stands for
    (with the handler that was installed before), or do nothing if it is an ordinary failure.
    Signal handlers belong to the main thread: elsewhere the block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield _reraise_interrupts(signal.SIG_DFL)
        return
    previous: SignalHandler = signal.getsignal(signal.SIGTERM)
    stopped = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped
        if stopped:
            return  # a repeat: dbt is cancelling the queries for the first one
        stopped = True
        raise StopRequested(signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield _reraise_interrupts(previous)
    finally:
        # Once stopped, a repeat must not break what ends the run either (Prefect's recording of the final
        # state, the hooks). Prefect delivers the signal again itself at the end, with the handler it found.
        signal.signal(signal.SIGTERM, _absorb_repeated_stop if stopped else previous)


def _absorb_repeated_stop(signum: int, frame: FrameType | None) -> None:
    """A stop signal received while the run is already stopping for one: nothing more to do."""


@contextmanager
def signals_end_the_command(end: Callable[[int], None]) -> Iterator[None]:
    """For a command line's run, in the main thread (the only one that may set handlers):

    - SIGTERM, where nothing more particular handles it (dbt during a dbt command, Prefect during the flow
      run), calls `end(signal)`: `exit_cleanly` or `send_then_die`. So does the signal Prefect sends again, with
      the handler it found installed, to end a run that a signal stopped.
    - SIGHUP is handed to the SIGTERM handler of the moment: dbt's (the queries are cancelled), Prefect's (the
      run ends Crashed, its hooks run), or `end`.

    One stop at a time: a signal that repeats one being handled is absorbed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ended = handed = False

    def end_once(signum: int, frame: FrameType | None) -> None:
        nonlocal ended
        if not ended:
            ended = True
            end(signum)

    def hand_to_sigterm_handler(signum: int, frame: FrameType | None) -> None:
        nonlocal handed
        if handed:
            return  # the command is already stopping for the first one
        handed = True
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler):
            handler(signum, frame)

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, end_once)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hand_to_sigterm_handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def exit_cleanly(signum: int) -> NoReturn:
    """End the command as an error would, where it stands, with exit status 128 + `signum`: what it holds is let go
    on the way out (a rendered profile and its key removed from disk, a file being replaced left as it was)."""
    raise SystemExit(128 + signum)


def send_then_die(last_words: Callable[[], None]) -> Callable[[int], None]:
    """An `end` that calls `last_words` (the run's last logs to the Prefect API, which a process killed at once
    would lose: Prefect sends them in batches), then ends the process by the signal, as Prefect ends a run stopped
    by one once its final state is recorded."""

    def end(signum: int) -> None:
        last_words()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    return end


@contextmanager
def ctrl_c_ends_the_command(command: str) -> Iterator[None]:
    """Ctrl-C anywhere in the block ends the command as it does once a run is under way: one line naming the signal,
    exit status 130, no traceback.

    For a command's whole life, its imports included: a temporary Prefect server takes up to 20 s to start on a
    fresh machine, which is when an impatient user presses Ctrl-C, and Python's answer was a 30-line traceback from
    wherever the main thread stood (importlib, Prefect's wait for its server). What the command holds is let go on
    the way out, as on any error.
    """
    try:
        yield
    except KeyboardInterrupt:
        raise SystemExit(say_stopped(command, signal.SIGINT)) from None


def say_stopped(command: str, signum: int) -> int:
    """Print the last line of a command stopped by `signum`; return the exit status that goes with it."""
    print(f"\n{command} stopped by {signal.Signals(signum).name}.", file=sys.stderr)
    return 128 + signum


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise `TimeLimitReached` in the main thread after `seconds` (SIGALRM); no limit elsewhere or if None.

    A timer signal rather than a watchdog thread: dbt waits for its nodes in the main thread, and an
    interrupt there is what makes it cancel the warehouse queries.
    """
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeLimitReached

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """SIGINT ignored in the block, when called from the main thread (the only one that may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def interruption_behind(error: BaseException | None) -> BaseException | None:
    """The interruption (Ctrl-C, a signal, a time limit) that stopped dbt, if one did, from the error dbt returned.

    Either the error itself, or the interrupt dbt was handling when its own clean-up failed over it: cancelling
    the open queries can raise (dbt-duckdb interrupts a connection that a node's thread closed a moment before:
    "Connection already closed!"), and that error then stands in front of the Ctrl-C it was cleaning up after,
    as its `__context__`: taken for the command's failure, it ended an interrupted run Failed.
    """
    if error is not None and not isinstance(error, Exception):
        return error
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__context__
    return None


def _reraise_interrupts(previous: SignalHandler) -> Callable[[BaseException | None], None]:
    def reraise(error: BaseException | None) -> None:
        if isinstance(error, TimeLimitReached):
            return  # the caller reports it as the command's failure
        if isinstance(error, StopRequested):
            if callable(previous):
                previous(error.signum, None)  # Prefect's handler raises its TerminationSignal
            raise SystemExit(128 + error.signum)
        if error is not None and not isinstance(error, Exception):
            raise error  # Ctrl-C, SystemExit, Prefect's own signals: not a failure of the dbt command

    return reraise


def stop_this_process(reason: str, *, grace_seconds: float) -> None:
    """Stop the process from any thread as a SIGTERM would (dbt cancels its queries, the private
    profile is removed), and end it with exit status 1 if it is still there `grace_seconds` later.

    For a run that has lost the Prefect API: Prefect's own attempts to record the run's end would
    otherwise retry for minutes. Its state is put right later (the next run on the target marks it
    Crashed). The caller ends the process sooner, with `exit_now`, once its clean-up is done.
    """
    print(f"\nStopping the run: {reason}.", file=sys.stderr, flush=True)
    timer = threading.Timer(grace_seconds, os._exit, args=(1,))  # if the clean-up itself hangs
    timer.daemon = True
    timer.start()
    # To the main thread, where the handlers run and dbt waits: it wakes up from a blocking wait.
    main = threading.main_thread().ident
    if main is not None:
        signal.pthread_kill(main, signal.SIGTERM)


def exit_now(message: str) -> NoReturn:
    """Print `message` as the command's last words and end the process with exit status 1 at once, skipping
    what Python and Prefect would still do at exit: report to a Prefect API that is out of reach."""
    print(f"\n{message}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


@dataclass(frozen=True)
class TimeLimits:
    """A run's time limits: a deadline for the whole run and a limit per step (None: no limit).

    `run_deadline` is on the `time.monotonic()` clock of the process running the flow.
    """

    run_timeout_seconds: float | None = None
    step_timeout_seconds: float | None = None
    run_deadline: float | None = None

    @classmethod
    def starting_now(cls, run_timeout_seconds: float | None, step_timeout_seconds: float | None) -> TimeLimits:
        deadline = time.monotonic() + run_timeout_seconds if run_timeout_seconds is not None else None
        return cls(run_timeout_seconds, step_timeout_seconds, deadline)

    def for_next_step(self) -> tuple[float | None, str]:
        """The time the next step may take, and which limit that is (for the message if it is reached)."""
        left = self.run_deadline - time.monotonic() if self.run_deadline is not None else None
        if left is not None and (self.step_timeout_seconds is None or left < self.step_timeout_seconds):
            return max(left, 0.0), f"run_timeout_seconds = {self.run_timeout_seconds:g}"
        if self.step_timeout_seconds is not None:
            return self.step_timeout_seconds, f"step_timeout_seconds = {self.step_timeout_seconds:g}"
        return None, ""
