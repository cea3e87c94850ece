"""Alerts: the flow's failure (and crash) hooks, and an optional summary on success.

The message says what an on-call engineer needs first: the target, the step that failed and dbt's
error when it could not run at all, each failing node with an excerpt of its error, the counts of
passed / failed / skipped nodes, and links to the run report and the flow run. It
goes through the environment's notification block (a Slack webhook by default). An alert that
cannot be sent is logged as a warning in the flow run's logs (in the UI too): it never changes the
run's own state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import Flow, State
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.logging.loggers import flow_run_logger

from dbt_pipeline.blocks import load_notification_block
from dbt_pipeline.environments import load_environments
from dbt_pipeline.errors import PipelineError
from dbt_pipeline.run_summary import RunSummary, excerpt
from prefect_flows.run_report import run_directory, ui_url

MAX_FAILED_NODES = 10
CANCELLED_BY_HAND = "`prefect flow-run cancel` or the UI's Cancel"
# Set to "false" by Prefect's runner (a worker's flow-run processes): the runner, not the flow-run
# process, runs the on_cancellation hooks once it has stopped the process (prefect.flow_engine).
_RUNNER_HOOKS_VARIABLE = "PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS"


def compose_message(*, target: str, flow_run: FlowRun, outcome: str, summary: RunSummary | None, error: str) -> str:
    """The alert's text (Slack mrkdwn, readable as plain text too): the cause first, then the links."""
    lines = [f"dbt pipeline {outcome} on target `{target}` (flow run {flow_run.name})"]
    failed_step = summary.failed_step if summary is not None else None
    if failed_step is not None:
        lines.append(f"Failed step: {failed_step.name} (`{failed_step.command}`)")
        if failed_step.error:
            lines.append(f"dbt could not run: {failed_step.error}")
    if summary is not None:
        lines.append(f"Nodes: {summary.passed} passed, {len(summary.failed)} failed, {summary.skipped} skipped")
        lines += [f"• `{node.unique_id}` ({node.status}): {node.message}" for node in summary.failed[:MAX_FAILED_NODES]]
        if len(summary.failed) > MAX_FAILED_NODES:
            lines.append(f"… and {len(summary.failed) - MAX_FAILED_NODES} more failing nodes")
    if error and failed_step is None:  # no dbt step to blame: the flow's own error is the cause
        lines.append(excerpt(error))
    if summary is not None and summary.report_url:
        lines.append(f"Run report: {summary.report_url}")
    lines.append(f"Flow run: {flow_run_url(flow_run)}")
    return "\n".join(lines)


def flow_run_url(flow_run: FlowRun) -> str:
    """The flow run's page in the Prefect UI (Cloud or self-hosted)."""
    return ui_url(f"runs/flow-run/{flow_run.id}")


def send_alert(
    flow: Flow[..., Any], flow_run: FlowRun, *, outcome: str, error: str = "", only_if: str = "always"
) -> None:
    """Send the alert for `flow_run` if its environment names a notification block; never raise."""
    target = str(flow_run.parameters.get("target", "dev"))
    try:
        environment = load_environments().get(target)
        if environment.notification_block is None or (only_if == "success" and not environment.notify_on_success):
            return
        project_dir = Path(flow_run.parameters.get("project_dir") or environment.dbt_project_dir)
        summary = RunSummary.read(run_directory(project_dir.resolve(), target, flow_run.name))
        message = compose_message(target=target, flow_run=flow_run, outcome=outcome, summary=summary, error=error)
        block = load_notification_block(environment.notification_block)
        # Hooks of a sync flow run synchronously: notify() sends and returns None here.
        block.notify(body=message, subject=f"[dbt {target}] pipeline {outcome}")  # type: ignore[unused-coroutine]
    except Exception as problem:  # an alert must never change the run's outcome
        # The hook runs after the flow's last state: its logger is the one bound to this flow run.
        flow_run_logger(flow_run, flow).warning(
            "Could not send the %s alert for target %r: %s", outcome, target, problem
        )


def alert_on_failure(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Flow hook: the run failed."""
    send_alert(flow, flow_run, outcome="FAILED", error=failure_text(state))


def failure_text(state: State[Any]) -> str:
    """What made the run fail: the whole message of one of our own errors, which the flow's state carries as its
    data (the state's message is only its first line), else the state's message."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # a result that cannot be read: the message is still there
        error = None
    return str(error) if isinstance(error, PipelineError) else state.message or ""


def alert_on_crash(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Flow hook: the run's process died (killed, out of memory) or its infrastructure failed.

    Not for a cancelled run that a worker stops: Prefect's runner delivers a cancel as an intent, then
    SIGTERM, and the flow-run process accepts the intent only while Prefect's own SIGTERM handler is
    installed. During a dbt command ours is (it makes dbt cancel its queries), so the process reports
    the SIGTERM as a crash; the worker then runs `alert_on_cancellation` and marks the run Cancelled.
    One alert, CANCELLED, rather than a CRASHED one first.
    """
    if _runner_owns_cancellation() and cancel_request(flow_run) is not None:
        flow_run_logger(flow_run, flow).info("Cancelled by request: the worker sends the CANCELLED alert")
        return
    send_alert(flow, flow_run, outcome="CRASHED", error=state.message or "")


def alert_on_cancellation(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Flow hook: the run was cancelled (`prefect flow-run cancel`, the UI, an automation) and its process stopped.

    A worker runs it once it has stopped the run's process, with a state of its own ("Flow run was
    cancelled."): what asked for the cancel is read from the run's Cancelling state.
    """
    request = cancel_request(flow_run)
    if request is None:
        cause = state.message or ""
    else:  # an automation says which one; `prefect flow-run cancel` and the UI's Cancel leave no message
        cause = request.message or f"Cancel requested through the Prefect API ({CANCELLED_BY_HAND})."
    send_alert(flow, flow_run, outcome="CANCELLED", error=cause)


def _runner_owns_cancellation() -> bool:
    return os.environ.get(_RUNNER_HOOKS_VARIABLE, "true").lower() == "false"


def cancel_request(flow_run: FlowRun) -> State[Any] | None:
    """The Cancelling state that asked for the run's cancellation, if that is the latest thing asked of
    the run (no start since); None otherwise, or if the API cannot say."""
    try:
        with get_client(sync_client=True) as client:
            states = client.read_flow_run_states(flow_run.id)
    except Exception:  # an alert is still better than none
        return None
    for past in sorted(states, key=lambda past: past.timestamp, reverse=True):
        if past.type == StateType.CANCELLING:
            return past
        if past.type in (StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED):
            return None
    return None


def summary_on_success(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Flow hook: a short summary, for environments with notify_on_success."""
    send_alert(flow, flow_run, outcome="succeeded", only_if="success")
