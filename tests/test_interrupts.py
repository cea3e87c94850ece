"""Stopping a run with a signal, as a terminal, a worker or a container runtime does.

Real processes and real signals: the pipeline command runs a model that would take minutes, and
the test sends SIGTERM to the process group of `uv run` (which passes it on: the command gets it twice,
as when systemd stops a unit), SIGINT to its process group (what Ctrl-C does), or closes the terminal it
runs in (SIGHUP). The run must stop within seconds, its warehouse query with it, free its target, leave
no private profile behind, and end Crashed with the signal named, never Failed with a misleading dbt error.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psycopg2  # type: ignore[import-untyped]  # no stubs among our pinned dev dependencies
import pytest
from dbt_common.events.base_types import EventMsg
from prefect.client.schemas.objects import StateType

from dbt_pipeline.dbt_invocation import DbtCommandResult, EventCallback, invoke_dbt
from tests.conftest import REPO, Workspace, busy_duckdb_model, duckdb_environments, sleeping_duckdb_model
from tests.loopback import WebhookReceiver, serving
from tests.postgres_server import PostgresServer
from tests.prefect_api import prefect_client, prefect_logs, read_flow_run
from tests.prefect_server import DATABASE
from tests.test_failures import write_project
from tests.test_postgres import postgres_environment

# What happens around a run, not what it builds: a slice of the example project (tests/conftest.py).
pytestmark = [pytest.mark.example_slice, pytest.mark.processes]

# A query that sleeps for ten minutes: long enough to be interrupted mid-query, idle while the test waits.
LONG_DUCKDB_MODEL = sleeping_duckdb_model()
# Minutes of work for DuckDB on one core, for the tests stopped seconds into it: dbt's cancel must stop work
# under way too.
BUSY_DUCKDB_MODEL = busy_duckdb_model(30_000_000_000)
LONG_POSTGRES_MODEL = "{{ config(materialized='table') }}\nselect 1 as slept from pg_sleep(600)\n"
# From the signal to the process's exit: the query's cancel, the final state, the hooks.
STOP_WITHIN_SECONDS = 60


def uv_run() -> list[str]:
    """`uv run`, as the README starts the commands, on the environment installed (no sync)."""
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH: the README installs it (`pip install uv`)"
    return [uv, "run", "--no-sync"]


class RunningPipeline:
    """The pipeline command in a process group of its own, its output in a file; `through_uv` as the README
    starts it, under `uv run`."""

    def __init__(self, workspace: Workspace, *args: str, through_uv: bool = False) -> None:
        self.log = workspace.root / f"pipeline-{time.monotonic_ns()}.log"
        python = [*uv_run(), "python"] if through_uv else [sys.executable]
        with self.log.open("w") as output:
            self.process = subprocess.Popen(
                [*python, "prefect_flows/pipeline.py", *args], cwd=REPO, env=workspace.env,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    @property
    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 240) -> None:
        """Until the run's output holds `pattern` (a text or a regular expression); fails if the run ends first."""
        found = pattern.search if isinstance(pattern, re.Pattern) else pattern.__contains__
        deadline = time.monotonic() + timeout
        while not found(self.output):
            assert self.process.poll() is None, f"the pipeline ended before {pattern!r}:\n{self.output[-4000:]}"
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout:g} s:\n{self.output[-4000:]}"
            time.sleep(0.5)

    def wait_for_query(self, step: str = "dbt-run", timeout: float = 240) -> None:
        """Until dbt runs the step's nodes (the step's "Running N nodes" line), plus a moment for the query to start."""
        self.wait_for(re.compile(rf"Task run '{step}-\w+' - Running \d+ nodes?$", re.MULTILINE), timeout)
        time.sleep(3)

    def stop(self, signum: signal.Signals, *, group: bool = False) -> float:
        """Send the signal (to the whole process group, as a terminal's Ctrl-C does); seconds until exit."""
        sent = time.monotonic()
        if group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)
        try:
            self.process.wait(timeout=STOP_WITHIN_SECONDS)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
        return time.monotonic() - sent


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with serving(WebhookReceiver(), "webhook-receiver") as server:
        yield server


def long_model_workspace(
    workspace: Workspace, dbt_project: Path, receiver: WebhookReceiver, model: str = LONG_DUCKDB_MODEL
) -> None:
    (dbt_project / "models" / "marts" / "long_running.sql").write_text(model)
    document = duckdb_environments(dbt_project, workspace.root / "warehouse" / "dev.duckdb", "dev")
    document["environments"]["dev"]["notification_block"] = "alerts-dev"  # type: ignore[index]
    workspace.write_environments(document)
    workspace.env["SLACK_WEBHOOK_URL"] = receiver.url
    workspace.setup("--blocks-only")


def assert_nothing_left(workspace: Workspace, prefect_api: str) -> None:
    """No private profile in the run's temp dir, and the target's slot free for the next run."""
    assert not list((workspace.root / "tmp").glob("**/profiles.yml")), "a private profile was left behind"
    with prefect_client(prefect_api) as client:
        assert client.read_global_concurrency_limit_by_name("dbt-target-dev").active_slots == 0


def test_sigterm_cancels_the_query_and_ends_crashed_naming_the_signal(
    workspace: Workspace, dbt_project: Path, prefect_api: str, receiver: WebhookReceiver
) -> None:
    """SIGTERM mid-query to the process group of `uv run` (systemd stopping a unit, `kill -- -PGID`), which the
    command gets twice, from the signal and from uv passing it on: out in seconds, Crashed, alert says why.
    The repeat must not break the cancel of the query under way."""
    long_model_workspace(workspace, dbt_project, receiver, BUSY_DUCKDB_MODEL)
    run = RunningPipeline(workspace, "--select", "long_running", through_uv=True)
    run.wait_for_query()
    took = run.stop(signal.SIGTERM, group=True)
    output = run.output
    print(f"\nSIGTERM mid-query: exited {took:.1f} s after the signal")  # shown with -s / -rA
    # Prefect ends a process that got SIGTERM by the same signal, once the run's state is written.
    assert run.process.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), output[-4000:]
    assert "CANCEL query model.shop_analytics.long_running" in output  # dbt cancelled DuckDB's query
    assert "DbtRunError" not in output
    flow_run = read_flow_run(prefect_api, output)
    assert flow_run.state_type == StateType.CRASHED, flow_run.state
    assert flow_run.state is not None
    assert "termination signal" in (flow_run.state.message or "")
    assert len(receiver.received) == 1
    alert = str(receiver.received[0]["text"])
    assert "pipeline CRASHED on target `dev`" in alert
    assert "termination signal" in alert
    assert_nothing_left(workspace, prefect_api)
    # The run's page in Prefect ends as the console did, with why the run stopped and its final state.
    logs = prefect_logs(prefect_api, flow_run)
    assert "Stopped by SIGTERM: dbt cancelled the queries" in logs
    assert "Finished in state Crashed('Execution was aborted by a termination signal.')" in logs


class Terminal:
    """An interactive shell in a pseudo-terminal of its own, as a terminal window or an SSH session gives a user:
    what it shows is kept (`screen`), and `hang_up` closes it as closing the window or losing the connection does
    (the kernel sends SIGHUP to the shell, which sends it to its jobs)."""

    def __init__(self, workspace: Workspace) -> None:
        self._master, tty = os.openpty()
        self.shell = subprocess.Popen(
            ["bash", "--norc", "--noprofile", "-i"], cwd=REPO, env={**workspace.env, "PS1": "$ ", "HISTFILE": ""},
            stdin=tty, stdout=tty, stderr=tty, start_new_session=True, preexec_fn=_take_controlling_terminal,
        )  # fmt: skip
        os.close(tty)
        self.screen = ""

    @property
    def text(self) -> str:
        """What the terminal shows, without its colours."""
        return _ESCAPES.sub("", self.screen).replace("\r\n", "\n")

    def type(self, line: str) -> None:
        os.write(self._master, f"{line}\n".encode())

    def press_ctrl_c(self) -> None:
        """What the key does: the terminal sends SIGINT to its foreground process group."""
        os.write(self._master, b"\x03")

    def read_until(self, found: Callable[[], bool], timeout: float, what: str) -> None:
        """Until `found()`, reading what the terminal shows meanwhile (a full terminal blocks its writers)."""
        deadline = time.monotonic() + timeout
        while not found():
            assert time.monotonic() < deadline, f"no {what} within {timeout:g} s:\n{self.text[-4000:]}"
            if select.select([self._master], [], [], 0.2)[0]:
                self.screen += os.read(self._master, 65536).decode(errors="replace")

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 240) -> None:
        """Until the terminal shows `pattern`."""
        self.read_until(lambda: bool(pattern.search(self.text)), timeout, repr(pattern.pattern))

    def close(self) -> None:
        """Close the terminal once what ran in it has ended: its shell exits."""
        os.close(self._master)
        self.shell.wait(timeout=30)

    def hang_up(self) -> float:
        """Close the terminal, then wait for what runs in it to end; the seconds that took."""
        started = [pid for pid in _processes() if _session_of(pid) == self.shell.pid and pid != self.shell.pid]
        assert started, f"nothing runs in the terminal:\n{self.text[-4000:]}"
        closed = time.monotonic()
        self.close()
        while any(_session_of(pid) is not None for pid in started):
            took = time.monotonic() - closed
            assert took < STOP_WITHIN_SECONDS, f"the command outlived its terminal by {STOP_WITHIN_SECONDS} s"
            time.sleep(0.2)
        return time.monotonic() - closed


_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # a terminal's colours and modes


def _take_controlling_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _processes() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except ProcessLookupError:
        return None


def _processes_with(prefect_home: Path) -> dict[int, str]:
    """The command lines of the processes started with this PREFECT_HOME (a command's and its temporary server's,
    which runs in a session of its own), by process id."""
    marker = f"PREFECT_HOME={prefect_home}".encode()
    found = {}
    for pid in _processes():
        try:
            if marker in (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0"):
                found[pid] = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            pass  # ended meanwhile
    return found


def test_closing_the_terminal_cancels_the_query_and_ends_crashed(
    workspace: Workspace, dbt_project: Path, prefect_api: str, receiver: WebhookReceiver
) -> None:
    """The terminal the README's command runs in closes mid-query (a laptop lid, a dropped SSH connection): SIGHUP,
    to the command and, passed on by `uv run`, again. By default it would end the process where it stands, its
    query running on, its target held, its private profile on disk, no alert. The run stops as it does on SIGTERM."""
    long_model_workspace(workspace, dbt_project, receiver)
    terminal = Terminal(workspace)
    terminal.type(" ".join([*uv_run(), "python", "prefect_flows/pipeline.py", "--select", "long_running"]))
    terminal.wait_for(re.compile(r"Task run 'dbt-run-\w+' - Running \d+ nodes?"))
    time.sleep(3)  # the query starts
    print(f"\nterminal closed mid-query: the command ended {terminal.hang_up():.1f} s later")

    flow_run = read_flow_run(prefect_api, terminal.text)
    assert flow_run.state_type == StateType.CRASHED, flow_run.state
    logs = prefect_logs(prefect_api, flow_run)  # what the closed terminal could not show, the run's page does
    assert "CANCEL query model.shop_analytics.long_running" in logs
    assert "Stopped by SIGHUP: dbt cancelled the queries" in logs
    assert "Finished in state Crashed('Execution was aborted by a termination signal.')" in logs
    assert len(receiver.received) == 1
    assert "pipeline CRASHED on target `dev`" in str(receiver.received[0]["text"])
    assert_nothing_left(workspace, prefect_api)


def test_closing_the_terminal_while_the_doctor_waits_for_the_warehouse_removes_its_rendered_profile(
    workspace: Workspace, dbt_project: Path
) -> None:
    """The doctor renders the target's profile to a private folder for `dbt debug` (on BigQuery, with the service
    account's key in it). A terminal closing while the warehouse does not answer must not leave it on disk."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        host, port = silent.getsockname()
        workspace.write_environments({
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "environments": {"pg": {"adapter": "postgres", "host": host, "port": port, "user": "analytics",
                                    "database": "analytics", "schema": "analytics", "threads": 1}},
        })  # fmt: skip
        workspace.env["DBT_ENV_SECRET_POSTGRES_PASSWORD"] = "not-a-real-password"
        workspace.setup("--blocks-only")
        terminal = Terminal(workspace)
        terminal.type(" ".join([*uv_run(), "python", "-m", "infrastructure.doctor", "--target", "pg"]))
        rendered = workspace.root / "tmp"
        deadline = time.monotonic() + 240
        while not list(rendered.glob("dbt-profiles-*/profiles.yml")):
            assert time.monotonic() < deadline, f"the doctor never reached the warehouse:\n{terminal.text[-4000:]}"
            time.sleep(0.2)
        terminal.hang_up()
    assert not list(rendered.glob("dbt-profiles-*")), "the rendered profile was left on disk"


def test_ctrl_c_in_the_default_mode_records_the_run_and_frees_the_target(
    workspace: Workspace, dbt_project: Path, tmp_path: Path, receiver: WebhookReceiver, prefect_database: Path
) -> None:
    """Ctrl-C with no PREFECT_API_URL: the temporary server outlives the run, which is recorded Crashed;
    the next run on the target starts at once."""
    workspace.env.pop("PREFECT_API_URL")
    workspace.env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    (tmp_path / "prefect-home").mkdir()
    shutil.copyfile(prefect_database, tmp_path / "prefect-home" / DATABASE)  # a new user's, migrated
    long_model_workspace(workspace, dbt_project, receiver)
    run = RunningPipeline(workspace, "--select", "long_running")
    run.wait_for_query()
    took = run.stop(signal.SIGINT, group=True)
    output = run.output
    print(f"\nCtrl-C mid-query (default mode): exited {took:.1f} s after the signal")
    assert run.process.returncode == 128 + signal.SIGINT, output[-4000:]
    assert "pipeline-dbt-complet stopped by SIGINT." in output
    assert "Traceback" not in output.split("Finished in state Crashed")[-1], "one line after the final state"
    # Written by the temporary server, which Ctrl-C did not stop:
    assert "Finished in state Crashed('Execution was aborted by an interrupt signal.')" in output
    assert "interrupt signal" in str(receiver.received[0]["text"])

    started = time.monotonic()
    rerun = workspace.pipeline("--select", "raw_stores", "--retries", "0")
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-4000:]
    assert "Waiting for target 'dev': " not in rerun.stdout + rerun.stderr
    print(f"next run after Ctrl-C: {time.monotonic() - started:.0f} s, no wait for the target")


# Where an impatient user presses Ctrl-C before a run is under way: the command's imports (seconds of them), or the
# start of its temporary Prefect server (up to 20 s on a fresh machine). The commands' arguments, by the name they
# sign their last line with.
COMMANDS_BEFORE_A_RUN = {
    "setup_profiles": "-m infrastructure.setup_profiles",
    "doctor": "-m infrastructure.doctor",
    "pipeline-dbt-complet": "prefect_flows/pipeline.py",
}


def importing(arguments: str, prefect_home: Path) -> bool:
    """The command's Python has started (not only `uv run`, whose command line names it too)."""
    return any(
        Path(line.split(" ", 1)[0]).name.startswith("python") and f" {arguments}" in line
        for line in _processes_with(prefect_home).values()
    )


def starting_the_server(arguments: str, prefect_home: Path) -> bool:
    return any(" -m uvicorn " in line for line in _processes_with(prefect_home).values())


STARTING_UP = {"imports": importing, "server start": starting_the_server}


@pytest.mark.parametrize("moment", STARTING_UP)
@pytest.mark.parametrize("command", COMMANDS_BEFORE_A_RUN)
def test_ctrl_c_before_a_run_ends_the_command_in_one_line(
    workspace: Workspace, dbt_project: Path, tmp_path: Path, prefect_database: Path, command: str, moment: str
) -> None:
    """Ctrl-C in a terminal while a command starts, with no PREFECT_API_URL (README command 1 on a fresh machine):
    one line naming the signal and exit status 130, not Python's traceback from wherever the main thread stood;
    nothing half-written, no process left behind (the temporary server included)."""
    workspace.env.pop("PREFECT_API_URL")
    home = tmp_path / "prefect-home"
    workspace.env["PREFECT_HOME"] = str(home)
    home.mkdir()
    shutil.copyfile(prefect_database, home / DATABASE)  # a new user's, migrated
    terminal = Terminal(workspace)
    arguments = COMMANDS_BEFORE_A_RUN[command]
    terminal.type(" ".join([*uv_run(), "python", arguments, "; echo exit=$?"]))
    under_way = STARTING_UP[moment]
    terminal.read_until(lambda: under_way(arguments, home), timeout=120, what=f"{moment} of {command}")
    terminal.press_ctrl_c()
    terminal.wait_for(re.compile(r"exit=\d+"), timeout=STOP_WITHIN_SECONDS)

    shown = terminal.text.split("; echo exit=$?", 1)[-1]
    assert "exit=130" in shown, shown[-4000:]
    assert shown.count(f"{command} stopped by SIGINT.") == 1, shown[-4000:]
    assert "Traceback" not in shown, shown[-4000:]
    assert not (dbt_project / "profiles.yml").exists(), "a profiles.yml was written by a command stopped halfway"
    deadline = time.monotonic() + 10  # the temporary server is told to stop as the command exits
    while (left := _processes_with(home).keys() - {terminal.shell.pid}) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"left running after Ctrl-C: {_processes_with(home)}"
    terminal.close()


def test_sigterm_cancels_a_postgres_query(
    workspace: Workspace, dbt_project: Path, prefect_api: str, postgres_server: PostgresServer
) -> None:
    """On PostgreSQL the query is cancelled on the server, not left running after the run is gone."""
    (dbt_project / "models" / "marts" / "long_running.sql").write_text(LONG_POSTGRES_MODEL)
    postgres_environment(workspace, dbt_project, postgres_server)
    workspace.env["DBT_ENV_SECRET_POSTGRES_PASSWORD"] = postgres_server.password
    workspace.setup("--blocks-only")
    run = RunningPipeline(workspace, "--target", "pg", "--select", "long_running")
    run.wait_for_query()
    assert sleeping_queries(postgres_server) == 1, run.output[-3000:]
    run.stop(signal.SIGTERM)
    assert run.process.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), run.output[-4000:]
    assert sleeping_queries(postgres_server) == 0, "the query outlived the run"


def sleeping_queries(server: PostgresServer) -> int:
    with (
        psycopg2.connect(
            host=server.host, port=server.port, user=server.user, password=server.password, dbname=server.database
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "select count(*) from pg_stat_activity where state = 'active' and query like '%pg_sleep(600)%'"
            " and pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


# What the steps before `dbt run` take must fit in the limit: the slice's parse takes 1-3 s (the whole
# example's once took over 20 s on a 2-core machine busy with the rest of the suite).
TIME_LIMIT = 20


@pytest.mark.parametrize(
    ("settings", "flags", "limit"),
    [
        ({"step_timeout_seconds": TIME_LIMIT}, (), f"step_timeout_seconds = {TIME_LIMIT}"),
        ({"run_timeout_seconds": 3600}, ("--run-timeout", str(TIME_LIMIT)), f"run_timeout_seconds = {TIME_LIMIT}"),
    ],
    ids=["step-timeout-from-the-environment", "run-timeout-flag-over-the-environment"],
)
def test_time_limit_cancels_the_query_and_fails_naming_the_limit_and_the_node(
    workspace: Workspace,
    dbt_project: Path,
    prefect_api: str,
    receiver: WebhookReceiver,
    settings: dict[str, int],
    flags: tuple[str, ...],
    limit: str,
) -> None:
    """Past its time limit a step is stopped like Ctrl-C would (the query cancelled), and the run fails,
    not retried, with a message naming the limit and the node that was running."""
    long_model_workspace(workspace, dbt_project, receiver)
    document = duckdb_environments(dbt_project, workspace.root / "warehouse" / "dev.duckdb", "dev")
    document["environments"]["dev"].update(settings)  # type: ignore[index]
    workspace.write_environments(document)
    started = time.monotonic()
    result = workspace.pipeline("--select", "long_running", *flags)
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    assert "`dbt run --select long_running --target dev` was stopped after its time limit of" in output
    assert "its queries were cancelled" in output
    assert "Running at that moment: model.shop_analytics.long_running" in output, output[output.find("was stopped") :][
        :800
    ]
    assert f"The limit reached: {limit} s" in output
    assert "CANCEL query model.shop_analytics.long_running" in output
    flow_run = read_flow_run(prefect_api, output)
    assert flow_run.state_type == StateType.FAILED
    assert "Retry" not in output, "a time limit is not a transient failure"
    assert took < TIME_LIMIT + 120, f"took {took:.0f} s"
    assert_nothing_left(workspace, prefect_api)


def long_query_project(root: Path) -> Path:
    """A one-model dbt project on DuckDB whose model's query computes until it is interrupted (the cancel that
    fails below leaves a sleeping query's connection busy, and the next test's dbt in this process finds it so)."""
    output = {"type": "duckdb", "path": str(root.parent / "warehouse.duckdb"), "threads": 1}
    return write_project(root, {"dev": output}, {"long_running": BUSY_DUCKDB_MODEL}, {})


def run_with_a_failing_cancel(
    project: Path, timeout_seconds: float | None = None, callbacks: Sequence[EventCallback] = ()
) -> DbtCommandResult:
    """`dbt run` of `project` in this process, where cancelling the open query raises, as dbt-duckdb's cancel
    does when a node's thread closed the connection a moment before ("Connection already closed!")."""

    def cancel_fails(event: EventMsg) -> None:
        if event.info.name == "LogCancelLine":
            raise RuntimeError("Connection Error: Connection already closed!")

    return invoke_dbt(
        ["run", "--project-dir", str(project), "--profiles-dir", str(project), "--log-level", "none"],
        command="dbt run --target dev",
        project_dir=project,
        callbacks=[*callbacks, cancel_fails],  # dbt calls no callback after one that raises
        timeout_seconds=timeout_seconds,
    )


def ctrl_c_once_the_query_runs(event: EventMsg) -> None:
    """A dbt callback that sends this process's main thread a Ctrl-C a second after the model's query started
    (a fixed moment from the start could land before it, while dbt parses on a busy machine)."""
    if event.info.name == "NodeExecuting":
        main = threading.main_thread().ident
        assert main is not None
        threading.Timer(1, signal.pthread_kill, args=(main, signal.SIGINT)).start()


def test_a_time_limit_stays_a_time_limit_when_cancelling_the_query_fails(tmp_path: Path) -> None:
    """dbt's clean-up after the interrupt fails (the cancel raises over it): the step was still stopped at its
    time limit, and says so, rather than failing with the cancel's error."""
    cancels: list[EventMsg] = []

    def seen(event: EventMsg) -> None:
        if event.info.name == "LogCancelLine":
            cancels.append(event)

    result = run_with_a_failing_cancel(long_query_project(tmp_path / "project"), timeout_seconds=10, callbacks=[seen])
    assert result.stopped_at_time_limit, result.error
    assert cancels, (
        "the limit must stop the query, whose cancel then fails (a limit reached while dbt parses cancels none)"
    )
    assert result.error == "stopped after its time limit of 10 s"
    assert "Connection already closed" not in result.describe_failure()


def test_ctrl_c_stays_ctrl_c_when_cancelling_the_query_fails(tmp_path: Path) -> None:
    """The same failing clean-up after a Ctrl-C: the interrupt is raised again (the run ends Crashed, exit 130),
    not returned as a failed command (seen once in 14 Ctrl-Cs at random moments: the run ended Failed, exit 1,
    asking to rerun what failed)."""
    project = long_query_project(tmp_path / "project")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_with_a_failing_cancel(project, callbacks=[ctrl_c_once_the_query_runs])
    finally:
        signal.signal(signal.SIGINT, previous)
