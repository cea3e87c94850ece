"""The Prefect 3 deployments of prefect.yaml end to end: the real `prefect` CLI, a process worker, a real server.

Every Prefect 3 command that replaces a command of the seed (Prefect 2) is run here as a user types it:
`prefect work-pool create`, `prefect --no-prompt deploy --all` (for `deployment build` + `apply`),
`prefect worker start` (for `agent start`), `prefect deployment run`, `prefect deployment schedule create|ls`.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import duckdb
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule
from prefect.states import Cancelled

from tests.conftest import (
    REPO,
    Workspace,
    copy_example_project,
    copy_example_slice,
    duckdb_environments,
    make_workspace,
    sleeping_duckdb_model,
)
from tests.loopback import WebhookReceiver, serving
from tests.prefect_api import prefect_client
from tests.prefect_server import PREFECT
from tests.workers import Worker, running_worker

pytestmark = pytest.mark.processes

DEV = "pipeline-dbt-complet/dbt-dev"
PROD = "pipeline-dbt-complet/dbt-prod"
POOL = "default-pool"
WATCH = ["--watch", "--watch-timeout", "300"]
# The notification block of the module's `dev` environment: a name of its own on the session's server.
ALERTS_BLOCK = "alerts-deployments"
T = TypeVar("T")


@dataclass
class Deployed:
    """The workspace the deployments run in, and the worker running them."""

    workspace: Workspace
    worker: Worker

    def prefect(self, *args: str, timeout: float = 360) -> subprocess.CompletedProcess[str]:
        return self.workspace.prefect(*args, timeout=timeout)

    @contextmanager
    def client(self) -> Iterator[SyncPrefectClient]:
        """A Prefect client on the test server."""
        with prefect_client(self.workspace.env["PREFECT_API_URL"]) as client:
            yield client

    def flow_run(self, flow_run_id: UUID) -> FlowRun:
        with self.client() as client:
            return client.read_flow_run(flow_run_id)

    def deployment(self, name: str) -> DeploymentResponse:
        with self.client() as client:
            return client.read_deployment_by_name(name)


def flow_run_id(output: str) -> UUID:
    """The id of the flow run `prefect deployment run` created, from its output."""
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert match, output[-3000:]
    return UUID(match.group(1))


@pytest.fixture(scope="module")
def alerts() -> Iterator[WebhookReceiver]:
    """The Slack webhook the `dev` environment's alerts go to, for the module."""
    with serving(WebhookReceiver(), "deployment-alerts") as receiver:
        yield receiver


@pytest.fixture(scope="module")
def deployment_workspace(
    tmp_path_factory: pytest.TempPathFactory, prefect_api: str, prefect_home: Path, alerts: WebhookReceiver
) -> Workspace:
    """conftest's `workspace` (a DuckDB `dev` environment on a private copy of the example project) for the module,
    its alerts sent to `alerts` (the setup creates the Slack webhook block from SLACK_WEBHOOK_URL).

    conftest's `workspace` and `dbt_project` are function-scoped, and the module's single worker must be started
    with this environment (its flow-run processes inherit it), so they are built the same way, once.
    """
    root = tmp_path_factory.mktemp("deployments")
    project = copy_example_project(root / "dbt")
    workspace = make_workspace(root, prefect_api, prefect_home, SLACK_WEBHOOK_URL=alerts.url)
    document = duckdb_environments(project, root / "warehouse" / "dev.duckdb", "dev")
    document["environments"]["dev"]["notification_block"] = ALERTS_BLOCK  # type: ignore[index]
    workspace.write_environments(document)
    return workspace


@pytest.fixture(scope="module")
def deployed(deployment_workspace: Workspace) -> Iterator[Deployed]:
    """The README's steps once for the module: the blocks, work pool, `prefect deploy --all`, a worker.

    The worker is stopped at the end of the module, whatever happened.
    """
    with ThreadPoolExecutor(max_workers=1) as background:
        # The blocks, meanwhile (independent of the rest), in a process: in this one it would change os.environ under
        # the other commands.
        setup = background.submit(deployment_workspace.setup, process=True)
        created = deployment_workspace.prefect("work-pool", "create", POOL, "--type", "process", "--overwrite")
        assert created.returncode == 0, created.stdout + created.stderr
        prefect_yaml = (REPO / "prefect.yaml").read_bytes()
        deploy = deployment_workspace.prefect("--no-prompt", "deploy", "--all")
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        for name in (DEV, PROD):
            assert f"Deployment '{name}' successfully" in " ".join(deploy.stdout.split()), deploy.stdout
        assert (REPO / "prefect.yaml").read_bytes() == prefect_yaml, "prefect deploy must not rewrite prefect.yaml"
        setup.result()

    with running_worker(deployment_workspace, POOL) as worker:
        yield Deployed(deployment_workspace, worker)


@pytest.mark.parametrize(("name", "target"), [(DEV, "dev"), (PROD, "prod")], ids=["dbt-dev", "dbt-prod"])
def test_deploy_creates_the_deployments_of_prefect_yaml(deployed: Deployed, name: str, target: str) -> None:
    """`prefect --no-prompt deploy --all` creates each deployment on default-pool with its target, tags and limit 1."""
    deployment = deployed.deployment(name)
    assert deployment.entrypoint == "prefect_flows/pipeline.py:dbt_full_pipeline"
    assert deployment.work_pool_name == POOL
    assert deployment.parameters == {"target": target}
    assert deployment.tags == ["dbt", target]
    assert deployment.description
    # A deployment's concurrency limit is stored as a global concurrency limit of its own (its
    # `concurrency_limit` field reads None); no collision strategy means ENQUEUE: a second run waits.
    assert deployment.global_concurrency_limit is not None
    assert deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options is None
    # Without a `pull` section, `prefect deploy` records the directory it ran from: the repository.
    assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]


def test_prod_runs_nightly_at_two_paris_time(deployed: Deployed) -> None:
    """dbt-prod has exactly the cron schedule of prefect.yaml, 02:00 every day in the Europe/Paris time zone."""
    schedules = deployed.deployment(PROD).schedules
    assert [(schedule.schedule, schedule.active) for schedule in schedules] == [
        (CronSchedule(cron="0 2 * * *", timezone="Europe/Paris"), True)
    ]
    assert deployed.deployment(DEV).schedules == []


def test_deployment_run_builds_dev_and_a_second_run_waits(deployed: Deployed) -> None:
    """`prefect deployment run ... --param target=dev --watch` exits 0, the warehouse built; a second run waits."""
    output = deployed.workspace.root / "run-dev.log"
    with output.open("w") as handle:
        watched = subprocess.Popen(
            [str(PREFECT), "deployment", "run", DEV, "--param", "target=dev", *WATCH],
            cwd=REPO, env=deployed.workspace.env, stdout=handle, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        # While the run is going, the seed's plain `prefect deployment run` creates a second run of the
        # deployment: concurrency_limit 1 holds it in AwaitingConcurrencySlot instead of starting it.
        first = _wait_for(deployed, lambda: _created_run(output), "the flow run id in the output", watched)
        _wait_for(deployed, lambda: deployed.flow_run(first).state_type == StateType.RUNNING, "a Running run", watched)
        second = deployed.prefect("deployment", "run", DEV)
        assert second.returncode == 0, second.stdout + second.stderr
        waiting = flow_run_id(second.stdout)
        _wait_for(
            deployed, lambda: deployed.flow_run(waiting).state_name == "AwaitingConcurrencySlot", "a wait", watched
        )
        assert deployed.flow_run(first).state_type == StateType.RUNNING
        _cancel(deployed, waiting)  # it would run the same build again 30 s later

        returncode = watched.wait(timeout=360)
    finally:
        if watched.poll() is None:
            watched.kill()
            watched.wait()
    log = output.read_text()
    assert returncode == 0, log[-3000:] + deployed.worker.tail()
    assert "Flow run finished successfully in 'Completed'" in log
    with duckdb.connect(str(deployed.workspace.root / "warehouse" / "dev.duckdb"), read_only=True) as database:
        (orders,) = database.execute("select count(*) from main.orders").fetchone()  # type: ignore[misc]
    assert orders == 800


def test_deployment_run_of_a_broken_project_fails(deployed: Deployed) -> None:
    """A run whose project has a broken model ends Failed, and `prefect deployment run --watch` exits non-zero."""
    broken = deployed.workspace.root / "broken_project"
    copy_example_slice(broken)
    (broken / "models" / "marts" / "broken.sql").write_text("select * from missing_table\n")
    result = deployed.prefect(
        "deployment", "run", DEV, "--param", "target=dev", "--param", f"project_dir={broken}", *WATCH
    )
    assert result.returncode != 0, result.stdout[-3000:]
    assert "Flow run finished in state 'Failed'" in result.stdout, result.stdout[-3000:] + deployed.worker.tail()
    run = deployed.flow_run(flow_run_id(result.stdout))
    assert run.parameters == {"target": "dev", "project_dir": str(broken)}
    assert run.state_type == StateType.FAILED


def test_schedule_create_then_ls_shows_it(deployed: Deployed) -> None:
    """The seed's `prefect deployment schedule create dbt-dev --cron "0 2 * * *"` works, and `schedule ls` lists it."""
    try:
        created = deployed.prefect("deployment", "schedule", "create", DEV, "--cron", "0 2 * * *")
        assert created.returncode == 0, created.stdout + created.stderr
        listed = deployed.prefect("deployment", "schedule", "ls", DEV)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert "cron: 0 2 * * *" in listed.stdout, listed.stdout
    finally:  # no run of dbt-dev may be scheduled for the rest of the session
        cleared = deployed.prefect("deployment", "schedule", "clear", DEV, "--accept-yes")
        assert cleared.returncode == 0, cleared.stdout + cleared.stderr


def _created_run(output: Path) -> UUID | None:
    match = re.search(r"UUID: ([0-9a-f-]{36})", output.read_text())
    return UUID(match.group(1)) if match else None


def _wait_for(
    deployed: Deployed, probe: Callable[[], T | None], what: str, watched: subprocess.Popen[str], timeout: float = 120
) -> T:
    """Poll `probe` until it returns something truthy; fail early if the worker or the watched command stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        assert deployed.worker.process.poll() is None, (
            f"the worker stopped while waiting for {what}" + deployed.worker.tail()
        )
        assert watched.poll() is None, (
            f"`prefect deployment run` ended while waiting for {what}" + deployed.worker.tail()
        )
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}" + deployed.worker.tail())


def _cancel(deployed: Deployed, flow_run: UUID) -> None:
    with deployed.client() as client:
        client.set_flow_run_state(flow_run, Cancelled(message="test: the concurrency limit held it"), force=True)


def test_cancel_stops_a_running_deployment_run_and_its_query(deployed: Deployed, alerts: WebhookReceiver) -> None:
    """`prefect flow-run cancel` on a run in a long DuckDB query: Cancelled within seconds, the query
    stopped (the warehouse file writable again), the target free for the next run, and one alert, CANCELLED
    (not CRASHED: the worker's SIGTERM reaches the run as a crash before the worker runs the cancel hook)."""
    project = deployed.workspace.root / "long_project"
    copy_example_slice(project)
    (project / "models" / "marts" / "long_running.sql").write_text(sleeping_duckdb_model())
    started = deployed.prefect(
        "deployment", "run", DEV, "--param", f"project_dir={project}", "--param", "select=long_running"
    )
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = flow_run_id(started.stdout)
    deadline = time.monotonic() + 240
    while not _step_running(deployed, run_id, "dbt-run"):
        assert time.monotonic() < deadline, "dbt-run never started" + deployed.worker.tail()
        time.sleep(1)
    time.sleep(5)  # the query is under way

    asked = time.monotonic()
    cancelled = deployed.prefect("flow-run", "cancel", str(run_id))
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    while deployed.flow_run(run_id).state_type != StateType.CANCELLED:
        assert time.monotonic() - asked < 60, f"still {deployed.flow_run(run_id).state_name}" + deployed.worker.tail()
        time.sleep(0.5)
    took = time.monotonic() - asked
    print(f"\nflow-run cancel: Cancelled {took:.1f} s after the request")  # shown with -s / -rA
    warehouse = deployed.workspace.root / "warehouse" / "dev.duckdb"
    while True:  # the query's process holds DuckDB's write lock until it is gone
        try:
            duckdb.connect(str(warehouse)).close()
            break
        except duckdb.IOException:
            assert time.monotonic() - asked < 60, "the query outlived the cancelled run"
            time.sleep(0.5)
    with deployed.client() as client:
        assert client.read_global_concurrency_limit_by_name("dbt-target-dev").active_slots == 0

    # The worker runs the on_cancellation hook before it marks the run Cancelled: the alert is in.
    run_name = deployed.flow_run(run_id).name
    sent = [str(alert["text"]) for alert in alerts.received if f"(flow run {run_name})" in str(alert["text"])]
    assert len(sent) == 1, f"{len(sent)} alerts for the run: {sent}" + deployed.worker.tail()
    assert f"dbt pipeline CANCELLED on target `dev` (flow run {run_name})" in sent[0], sent[0]
    assert "Cancel requested through the Prefect API (`prefect flow-run cancel` or the UI's Cancel)" in sent[0], sent[0]


def _step_running(deployed: Deployed, flow_run: UUID, step: str) -> bool:
    with deployed.client() as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run])))
    return any(run.name.startswith(f"{step}-") and run.state_type == StateType.RUNNING for run in runs)
