"""Failure alerts through a notification block, delivered to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings

from dbt_pipeline.run_summary import SUMMARY_FILE
from prefect_flows.alerts import send_alert
from prefect_flows.pipeline import dbt_full_pipeline
from prefect_flows.run_record import LAST_RUN_FILE
from prefect_flows.run_report import run_directory
from tests.conftest import Workspace, duckdb_environments
from tests.loopback import WebhookReceiver, serving
from tests.prefect_api import prefect_logs, read_flow_run

# What a run's end sends, not what it builds: a slice of the example project (tests/conftest.py).
pytestmark = pytest.mark.example_slice


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A webhook receiver on a free loopback port; yields its URL and the payloads it got."""
    with serving(WebhookReceiver(), "webhook-receiver") as server:
        yield server.url, server.received


def alerting_environment(workspace: Workspace, project: Path, **settings: object) -> None:
    document = duckdb_environments(project, workspace.root / "warehouse" / "dev.duckdb", "dev")
    document["environments"]["dev"].update(notification_block="alerts-dev", **settings)  # type: ignore[index]
    workspace.write_environments(document)


def report_artifact_id(prefect_api: str, flow_run_id: object) -> str:
    """The id of the run report artifact the flow run published."""
    with temporary_settings({PREFECT_API_URL: prefect_api}), get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="dbt-run-report-dev")),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        )
    assert len(artifacts) == 1
    return str(artifacts[0].id)


def test_failure_alert_names_target_nodes_counts_and_url(
    workspace: Workspace, dbt_project: Path, prefect_api: str, receiver: tuple[str, list[dict[str, object]]]
) -> None:
    """A failed run posts one message: target, failed step, failing node with its error, node counts, and links
    to the run report and the flow run."""
    url, received = receiver
    (dbt_project / "models" / "marts" / "broken_revenue.sql").write_text("select amount from no_such_table\n")
    alerting_environment(workspace, dbt_project)
    workspace.env["SLACK_WEBHOOK_URL"] = url
    # created, or updated to this test's receiver when another test file on this worker's server made it first
    assert re.search(r"(created|updated)\s+alerts-dev", workspace.setup("--blocks-only").stdout)
    result = workspace.pipeline("--select", "+stg_shop__stores broken_revenue", "--retries", "0")
    assert result.returncode == 1

    assert len(received) == 1
    text = str(received[0]["text"])
    flow_run = read_flow_run(prefect_api, result.stdout + result.stderr)
    assert "pipeline FAILED on target `dev`" in text
    assert "Failed step: run (`dbt run --select '+stg_shop__stores broken_revenue' --target dev`)" in text
    assert "`model.shop_analytics.broken_revenue` (error): " in text
    assert "no_such_table" in text
    assert "Nodes: 2 passed, 1 failed, 0 skipped" in text
    ui = prefect_api.removesuffix("/api")
    assert f"Run report: {ui}/artifacts/artifact/{report_artifact_id(prefect_api, flow_run.id)}" in text
    assert f"/runs/flow-run/{flow_run.id}" in text


@pytest.mark.parametrize(
    ("model", "sql", "cause"),
    [
        ("broken_ref", "select * from {{ ref('no_such_model') }}\n", "depends on a node named 'no_such_model'"),
        ("broken_jinja", "select {{ config(materialized='table' }}\n", "Compilation Error"),
    ],
    ids=["broken-ref", "compilation-error"],
)
def test_alert_of_a_step_that_could_not_run_carries_dbt_s_error(
    workspace: Workspace,
    dbt_project: Path,
    prefect_api: str,
    receiver: tuple[str, list[dict[str, object]]],
    model: str,
    sql: str,
    cause: str,
) -> None:
    """No node ran, so no node is to blame: the alert names the step and carries dbt's own error."""
    url, received = receiver
    (dbt_project / "models" / "marts" / f"{model}.sql").write_text(sql)
    alerting_environment(workspace, dbt_project)
    workspace.env["SLACK_WEBHOOK_URL"] = url
    workspace.setup("--blocks-only")
    result = workspace.pipeline("--retries", "0")
    assert result.returncode == 1

    assert len(received) == 1
    text = str(received[0]["text"])
    flow_run = read_flow_run(prefect_api, result.stdout + result.stderr)
    assert "Failed step: parse (`dbt parse --target dev`)" in text, text
    assert "dbt could not run: " in text
    assert cause in text, text
    assert model in text
    assert "Nodes: 0 passed, 0 failed, 0 skipped" in text
    assert f"artifacts/artifact/{report_artifact_id(prefect_api, flow_run.id)}" in text


def test_unreachable_receiver_leaves_the_run_state_alone(
    workspace: Workspace, dbt_project: Path, prefect_api: str
) -> None:
    """With the webhook down, the alert is a warning in the run's Prefect logs; the run keeps its state and exit."""
    alerting_environment(workspace, dbt_project)
    workspace.env["SLACK_WEBHOOK_URL"] = "http://127.0.0.1:9/services/down"  # discard port: nothing listens
    workspace.setup("--blocks-only")
    (dbt_project / "models" / "marts" / "broken_revenue.sql").write_text("select amount from no_such_table\n")
    result = workspace.pipeline("--select", "broken_revenue", "--retries", "0")
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "Could not send the FAILED alert for target 'dev'" in output
    flow_run = read_flow_run(prefect_api, output)
    assert flow_run.state_type is not None
    assert flow_run.state_type.value == "FAILED"
    assert "Could not send the FAILED alert for target 'dev'" in prefect_logs(prefect_api, flow_run)


def test_a_full_disk_fails_the_run_with_one_clear_message_and_the_alert_says_it(
    workspace: Workspace, dbt_project: Path, prefect_api: str, receiver: tuple[str, list[dict[str, object]]]
) -> None:
    """The disk that holds the project's target folder is full: the run fails with one message that says so and
    what to free, without a traceback, and the alert says it. (Before: Prefect's "Encountered exception during
    execution" and a bare `OSError: [Errno 28]` traceback, twice.)

    The disk: the run's first write there, its record of itself (last_run.json, written through a temporary
    file), goes to /dev/full, the kernel's always-full device, as a test cannot fill a real disk here."""
    url, received = receiver
    alerting_environment(workspace, dbt_project)
    workspace.env["SLACK_WEBHOOK_URL"] = url
    workspace.setup("--blocks-only")
    target_folder = dbt_project / "target" / "dev"
    target_folder.mkdir(parents=True)
    (target_folder / f".{LAST_RUN_FILE}.tmp").symlink_to("/dev/full")
    result = workspace.pipeline("--select", "stg_shop__stores")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert "Encountered exception" not in output
    said = "The disk is full: the run could not write a file (No space left on device)"
    assert output.count(said) == 2, output  # logged once by the flow, and the command's last line
    assert "the reports of old runs, in target/dev/runs/, can go" in output
    assert read_flow_run(prefect_api, output).state_type == StateType.FAILED
    assert len(received) == 1
    assert said in str(received[0]["text"])


def test_success_summary_when_asked(
    workspace: Workspace, dbt_project: Path, receiver: tuple[str, list[dict[str, object]]]
) -> None:
    """notify_on_success sends a summary of a successful run; without it a success stays silent."""
    url, received = receiver
    alerting_environment(workspace, dbt_project, notify_on_success=True)
    workspace.env["SLACK_WEBHOOK_URL"] = url
    workspace.setup("--blocks-only")
    assert workspace.pipeline("--select", "raw_stores").returncode == 0
    assert len(received) == 1
    assert "pipeline succeeded on target `dev`" in str(received[0]["text"])
    assert "Nodes: " in str(received[0]["text"])

    alerting_environment(workspace, dbt_project)
    assert workspace.pipeline("--select", "raw_stores").returncode == 0
    assert len(received) == 1


def test_an_alert_goes_out_when_the_run_summary_cannot_be_read(
    workspace: Workspace,
    dbt_project: Path,
    prefect_api: str,
    receiver: tuple[str, list[dict[str, object]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run's summary.json cut short (a disk that filled as it was written, before the summary was written in one
    replace) or written by another version of the pipeline: the failure alert still goes out, with the run's error
    and link, only without the node counts. (Before: the hook's reading failed, and no alert went out at all.)"""
    url, received = receiver
    alerting_environment(workspace, dbt_project)
    workspace.env["SLACK_WEBHOOK_URL"] = url
    workspace.setup("--blocks-only")
    monkeypatch.setenv("PIPELINE_ENVIRONMENTS_FILE", str(workspace.environments_file))
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        with get_client(sync_client=True) as client:
            flow_run = client.create_flow_run(dbt_full_pipeline, parameters={"target": "dev"})
        directory = run_directory(dbt_project.resolve(), "dev", flow_run.name)
        directory.mkdir(parents=True)
        (directory / SUMMARY_FILE).write_text('{"target": "dev", "passed": 12, "fail', encoding="utf-8")
        send_alert(dbt_full_pipeline, flow_run, outcome="FAILED", error="the run's own error")

    assert len(received) == 1, "no alert went out"
    text = str(received[0]["text"])
    assert "pipeline FAILED on target `dev`" in text
    assert "the run's own error" in text
    assert f"/runs/flow-run/{flow_run.id}" in text
    assert "Nodes:" not in text
