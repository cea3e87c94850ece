"""Faults: a flow-run process killed mid-run under a real worker, the run after it, and an unreachable Prefect API.

The crash is what an out-of-memory killer or a lost machine does to a deployment run: the worker's child process
running the flow gets SIGKILL while dbt is building, so no code of the flow itself runs afterwards. The worker must
report the run Crashed and run its on_crashed hook (the alert); the next run must get the target's concurrency slot
back (the dead run never released it: its lease has to expire) and rebuild an intact warehouse.

The run builds a slice of the example project (tests/conftest.py), then a model whose query sleeps until the test
opens a gate: the kill lands while DuckDB runs that model's `create table ... as select`, after the slice's models
were written, whatever the machine's speed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import duckdb
import pytest
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
    TaskRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound

from tests.conftest import (
    SHORT_TAKEOVER,
    SLICE_MART,
    Workspace,
    copy_example_slice,
    duckdb_environments,
    make_workspace,
    sleeping_duckdb_model,
    with_short_takeover,
)
from tests.loopback import WebhookReceiver, serving
from tests.prefect_api import all_task_runs, prefect_client, read_flow_run, step_runs
from tests.workers import Worker, running_worker

# What happens around a run, not what it builds: a slice of the example project (tests/conftest.py).
pytestmark = [pytest.mark.example_slice, pytest.mark.processes]

DEV = "pipeline-dbt-complet/dbt-dev"
POOL = "default-pool"
TARGET_LIMIT = "dbt-target-dev"  # the global concurrency limit the flow holds for the whole run (setup creates it)
MODELS_BEFORE_KILL = 3  # the slice's: the kill lands while the fourth, WAITING_MODEL, waits for the test
WAITING_MODEL = "waits_for_the_test"
# The slice's relations and the one the kill interrupted, as the next run leaves them.
EXPECTED_ROWS = {"stg_shop__customers": 150, "stg_shop__stores": 5, "stores_per_channel": 3, WAITING_MODEL: 1}
UNREACHABLE_API = "http://127.0.0.1:9/api"  # the discard port: nothing listens there
T = TypeVar("T")


@dataclass
class Crash:
    """A deployment run whose flow process was SIGKILLed while a dbt step was running."""

    workspace: Workspace
    worker: Worker
    received: list[dict[str, object]]
    flow_run_id: UUID = field(default_factory=lambda: UUID(int=0))
    killed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    killed_step: str = ""
    killed_command: str = ""

    @property
    def api(self) -> str:
        return self.workspace.env["PREFECT_API_URL"]

    def flow_run(self) -> FlowRun:
        with prefect_client(self.api) as client:
            return client.read_flow_run(self.flow_run_id)


def _flow_run_processes(flow_run_id: UUID) -> dict[int, str]:
    """The live processes (pid: command line) whose environment names the flow run: the worker's flow-run child."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # dead, waiting for the worker to reap it
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def _wait_for(probe: Callable[[], T | None], what: str, timeout: float, *, alive: Crash | None = None) -> T:
    """Poll `probe` until it returns something truthy; fail (never hang) after `timeout` or if the worker stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if alive is not None:
            assert alive.worker.process.poll() is None, (
                f"the worker stopped while waiting for {what}" + alive.worker.tail()
            )
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (alive.worker.tail() if alive else ""))


def _kill_point(api: str, flow_run_id: UUID) -> tuple[str, int] | None:
    """(step, models built) once `dbt-run` is Running with the slice's models built: WAITING_MODEL runs."""
    with prefect_client(api) as client:
        running = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING]))
            ),
        )
        steps = {run.name.rsplit("-", 1)[0]: run.name for run in running if not run.task_inputs.get("__parents__")}
        if "dbt-run" not in steps:
            return None
        built = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(
                tags=TaskRunFilterTags(all_=["dbt-step:run"]),
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.COMPLETED])),
            ),
        )
    return (steps["dbt-run"], len(built)) if len(built) >= MODELS_BEFORE_KILL else None


def _row_counts(database: Path) -> dict[str, int]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return {
            table: connection.execute(f"select count(*) from main.{table}").fetchone()[0]  # type: ignore[index]
            for table in EXPECTED_ROWS
        }


@pytest.fixture(scope="module")
def crash_receiver() -> Iterator[WebhookReceiver]:
    """A Slack-webhook stand-in on a free loopback port, for the whole module."""
    with serving(WebhookReceiver(), "crash-alert-receiver") as server:
        yield server


@pytest.fixture(scope="module")
def crash_workspace(
    tmp_path_factory: pytest.TempPathFactory, prefect_api: str, prefect_home: Path, crash_receiver: WebhookReceiver
) -> Workspace:
    """conftest's `workspace` for the module (the worker's flow processes inherit its environment), alerting `dev`.

    The environments file names the Slack webhook block `alerts-dev`; SLACK_WEBHOOK_URL points the setup at the
    local receiver.
    """
    root = tmp_path_factory.mktemp("crashes")
    project = copy_example_slice(root / "dbt")
    waiting = sleeping_duckdb_model(gate=root / "gate", after=SLICE_MART)
    (project / "models" / "marts" / f"{WAITING_MODEL}.sql").write_text(waiting)
    workspace = make_workspace(root, prefect_api, prefect_home, SLACK_WEBHOOK_URL=crash_receiver.url)
    document = with_short_takeover(duckdb_environments(project, root / "warehouse" / "dev.duckdb", "dev"))
    document["environments"]["dev"]["notification_block"] = "alerts-dev"
    workspace.write_environments(document)
    return workspace


def _release_stale_slot(api: str) -> None:
    """Leave the session's other tests a free `dbt-target-dev` slot, whatever happened here.

    A killed run's slot comes back only when its lease expires (minutes). If it is still held at the end of the
    module, the limit is recreated as the setup creates it (a new id, so the stale lease cannot touch it later).
    """
    with prefect_client(api) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(TARGET_LIMIT)
        except ObjectNotFound:  # the setup never ran: nothing was held
            return
        if limit.active_slots:
            client.delete_global_concurrency_limit_by_name(TARGET_LIMIT)
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=TARGET_LIMIT, limit=1))


@pytest.fixture(scope="module")
def crash(crash_workspace: Workspace, crash_receiver: WebhookReceiver) -> Iterator[Crash]:
    """The README's deployment steps and a worker, then a full run of dbt-dev whose flow process is SIGKILLed.

    The kill happens once the flow run's `dbt-run` step has built a few models (read through the API). Everything
    started here is stopped at the end of the module: the worker's process group (SIGTERM, then SIGKILL) and any
    flow process.
    """
    workspace = crash_workspace
    setup = workspace.setup("--blocks-only")
    assert "alerts-dev" in setup.stdout, setup.stdout
    created = workspace.prefect("work-pool", "create", POOL, "--type", "process", "--overwrite")
    assert created.returncode == 0, created.stdout + created.stderr
    deploy = workspace.prefect("--no-prompt", "deploy", "--all")
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr

    with running_worker(workspace, POOL) as worker:
        crashed = Crash(workspace, worker, crash_receiver.received)
        try:
            run = workspace.prefect("deployment", "run", DEV, "--param", "target=dev", "--param", "retries=0")
            assert run.returncode == 0, run.stdout + run.stderr
            match = re.search(r"UUID: ([0-9a-f-]{36})", run.stdout)
            assert match, run.stdout
            crashed.flow_run_id = UUID(match.group(1))

            step, built = _wait_for(
                lambda: _kill_point(crashed.api, crashed.flow_run_id), "dbt-run building models", 300, alive=crashed
            )
            processes = _wait_for(
                lambda: _flow_run_processes(crashed.flow_run_id), "the flow process", 30, alive=crashed
            )
            assert crashed.flow_run().state_type == StateType.RUNNING, crashed.worker.tail()
            crashed.killed_step = f"{step} ({built} models built)"
            crashed.killed_command = " | ".join(processes.values())
            for pid in processes:
                os.kill(pid, signal.SIGKILL)
            crashed.killed_at = datetime.now(UTC)
            _wait_for(
                lambda: not _flow_run_processes(crashed.flow_run_id), "the flow process to die", 30, alive=crashed
            )
            (workspace.root / "gate").touch()  # the next run builds WAITING_MODEL at once
            yield crashed
        finally:
            if crashed.flow_run_id.int:
                for pid in _flow_run_processes(crashed.flow_run_id):
                    os.kill(pid, signal.SIGKILL)
            _release_stale_slot(crash_workspace.env["PREFECT_API_URL"])


def test_killed_flow_process_ends_crashed_and_alerts(crash: Crash, prefect_api: str) -> None:
    """A deployment run whose process is SIGKILLed mid-dbt ends Crashed and posts one CRASHED alert with its URL."""
    assert "prefect.engine" in crash.killed_command, crash.killed_command

    run: FlowRun = _wait_for(
        lambda: flow_run if (flow_run := crash.flow_run()).state_type == StateType.CRASHED else None,
        "the Crashed state",
        120,
        alive=crash,
    )
    assert run.state is not None
    assert "-9" in (run.state.message or "") or "SIGKILL" in (run.state.message or ""), run.state.message

    _wait_for(lambda: crash.received, "the crash alert", 120, alive=crash)
    time.sleep(5)  # a second message (a duplicate hook, a FAILED alert) would come right after the first
    assert len(crash.received) == 1, crash.received
    text = str(crash.received[0]["text"])
    print(f"\ncrash alert ({crash.killed_step}):\n{text}")  # shown with -s / -rA
    assert "pipeline CRASHED on target `dev`" in text, text
    assert f"(flow run {run.name})" in text, text
    assert f"{prefect_api.removesuffix('/api')}/runs/flow-run/{run.id}" in text, text


def test_rerun_after_a_kill_gets_the_slot_back_and_rebuilds(crash: Crash) -> None:
    """After the kill, the next dev run succeeds once it has the dead run's slot (taken over, or its lease
    expired), and the warehouse is intact."""
    started = time.monotonic()
    result = crash.workspace.pipeline("--retries", "0")
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    steps = step_runs(all_task_runs(crash.api, output))
    first_step = min(step.start_time for step in steps if step.start_time)
    rerun = read_flow_run(crash.api, output)
    assert rerun.start_time is not None
    waited = (first_step - rerun.start_time).total_seconds()
    since_kill = (first_step - crash.killed_at).total_seconds()
    print(  # measured facts, shown with -s / -rA
        f"\nrerun after kill (killed in {crash.killed_step}): slot wait {waited:.0f}s, "
        f"first dbt step {since_kill:.0f}s after the kill, rerun wall time {elapsed:.0f}s"
    )
    # The take-over of the silent holder (or the lease's expiry), the rerun's start-up on a busy machine.
    assert since_kill < SHORT_TAKEOVER.takeover_after + 90, f"the slot came back {since_kill:.0f}s after the kill"

    assert _row_counts(crash.workspace.root / "warehouse" / "dev.duckdb") == EXPECTED_ROWS


COMMANDS = pytest.mark.parametrize(
    "command",
    [("prefect_flows/pipeline.py",), ("-m", "infrastructure.setup_profiles"), ("-m", "infrastructure.doctor")],
    ids=["pipeline", "setup_profiles", "doctor"],
)


@COMMANDS
def test_unreachable_prefect_api_fails_fast_and_says_how_to_fix(workspace: Workspace, command: tuple[str, ...]) -> None:
    """With PREFECT_API_URL where nothing listens, the command exits 1 in seconds, naming the URL and the fix."""
    workspace.env["PREFECT_API_URL"] = UNREACHABLE_API
    started = time.monotonic()
    result = workspace.run(*command, timeout=60)  # TimeoutExpired (a failure) if it hangs
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr  # the doctor's checklist is its output, on stdout
    assert result.returncode == 1, output
    assert elapsed < 60
    assert f"Cannot reach the Prefect API at {UNREACHABLE_API}" in output
    assert output.count("prefect server start") == 1, output
    assert "PREFECT_API_URL" in output
    assert "Traceback" not in output


@pytest.fixture
def silent_api() -> Iterator[str]:
    """An API address that accepts connections (the kernel completes them) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/api"


@COMMANDS
def test_api_that_never_answers_is_reported_within_a_bounded_time(
    workspace: Workspace, silent_api: str, command: tuple[str, ...]
) -> None:
    """A port that accepts but never answers (a hung proxy, the wrong service) is named within ~15 s, not minutes."""
    workspace.env["PREFECT_API_URL"] = silent_api
    started = time.monotonic()
    result = workspace.run(*command, timeout=90)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert elapsed < 60, f"took {elapsed:.0f} s"
    assert f"The Prefect API at {silent_api} accepted the connection but did not answer within 15 s" in output
    assert "Traceback" not in output
