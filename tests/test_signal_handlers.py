"""The signal handlers of dbt_pipeline/interrupts.py, in this process and in a small one of their own.

What a whole run does on a signal (the query cancelled, the run Crashed, the target freed) is
tests/test_interrupts.py's, with real pipeline processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from types import FrameType

import pytest

from dbt_pipeline.interrupts import (
    StopRequested,
    ctrl_c_ends_the_command,
    exit_cleanly,
    signals_end_the_command,
    sigterm_interrupts_dbt,
)
from tests.conftest import REPO


@pytest.fixture(autouse=True)
def handlers_restored() -> Iterator[None]:
    """The test process's SIGTERM and SIGHUP handlers as they were: a stopped block leaves a repeat absorbed."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def signalled(signum: int) -> None:
    """Send `signum` to this process and give Python the moment it takes to run the handler."""
    os.kill(os.getpid(), signum)
    time.sleep(0.05)


def test_sigterm_reaches_dbt_once_and_a_repeat_is_absorbed() -> None:
    """The first SIGTERM stops dbt; one that follows (`uv run` passes on what its process group got) must not
    interrupt dbt's cancel of the queries, nor what ends the run after the block."""
    seen: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    with sigterm_interrupts_dbt():
        with pytest.raises(StopRequested) as stopped:
            signalled(signal.SIGTERM)
        assert stopped.value.signum == signal.SIGTERM
        signalled(signal.SIGTERM)  # while dbt cancels: nothing raised
    signalled(signal.SIGTERM)  # while Prefect records the run's end: nothing raised
    assert seen == [], "a repeat reached the handler the block replaced"


def test_a_block_that_was_not_stopped_gives_sigterm_back() -> None:
    seen: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    with sigterm_interrupts_dbt():
        pass
    signalled(signal.SIGTERM)
    assert seen == [signal.SIGTERM]


def test_sighup_is_handed_to_the_sigterm_handler_of_the_moment_once() -> None:
    """A closing terminal's SIGHUP goes where SIGTERM would, to dbt's handler during a dbt command; the repeats
    that follow it are absorbed."""
    with signals_end_the_command(exit_cleanly), sigterm_interrupts_dbt():
        with pytest.raises(StopRequested) as stopped:
            signalled(signal.SIGHUP)
        assert stopped.value.signum == signal.SIGHUP
        signalled(signal.SIGHUP)


def test_sighup_reaches_prefects_handler_outside_dbt() -> None:
    handled: list[int] = []

    def prefects(signum: int, frame: FrameType | None) -> None:
        handled.append(signum)

    with signals_end_the_command(exit_cleanly):
        signal.signal(signal.SIGTERM, prefects)  # as Prefect's engine does around a flow run
        signalled(signal.SIGHUP)
        signalled(signal.SIGHUP)
    assert handled == [signal.SIGHUP]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_command_without_a_flow_run_exits_cleanly_once(signum: signal.Signals) -> None:
    """The doctor and the setup: SystemExit where the command stands, its `finally` blocks run on the way out
    (the rendered profile removed); a repeat during that clean-up is absorbed."""
    cleaned: list[str] = []

    def command() -> None:
        with signals_end_the_command(exit_cleanly):
            try:
                signalled(signum)
            finally:
                signalled(signum)  # a repeat while cleaning up
                cleaned.append("profile removed")

    with pytest.raises(SystemExit) as exited:
        command()
    assert exited.value.code == 128 + signum
    assert cleaned == ["profile removed"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_send_then_die_says_its_last_words_then_ends_by_the_signal(signum: signal.Signals) -> None:
    """The pipeline: its last logs sent, then the process ends by the signal, as it would have (and as Prefect ends
    a run stopped by a signal)."""
    script = textwrap.dedent(f"""
        import os, time
        from dbt_pipeline.interrupts import send_then_die, signals_end_the_command
        with signals_end_the_command(send_then_die(lambda: print("last words", flush=True))):
            os.kill(os.getpid(), {int(signum)})
            time.sleep(10)
        print("went on", flush=True)
    """)
    ended = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert ended.returncode == -signum, ended.stderr
    assert ended.stdout == "last words\n"


def test_ctrl_c_ends_the_command_in_one_line_with_status_130(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended, ctrl_c_ends_the_command("setup_profiles"):
        raise KeyboardInterrupt
    assert ended.value.code == 128 + signal.SIGINT
    assert ended.value.__context__ is None or ended.value.__suppress_context__, "no traceback of the interrupt"
    assert capsys.readouterr().err == "\nsetup_profiles stopped by SIGINT.\n"


def test_ctrl_c_ends_the_command_lets_other_endings_through(capsys: pytest.CaptureFixture[str]) -> None:
    """An error keeps its own report, an exit its own status: only Ctrl-C is the block's to say."""
    with pytest.raises(SystemExit) as ended, ctrl_c_ends_the_command("doctor"):
        raise SystemExit(2)
    assert ended.value.code == 2
    with pytest.raises(ValueError, match="bad"), ctrl_c_ends_the_command("doctor"):
        raise ValueError("bad")
    assert capsys.readouterr().err == ""
