"""Alerts: the flow's failure (and crash) hooks, and an optional summary on success.

The message says what an on-call engineer needs first: the target, each failing node with an
excerpt of its error, the counts of passed / failed / skipped nodes, and the flow run's URL. It
goes through the environment's notification block (a Slack webhook by default). An alert that
cannot be sent is logged as a warning in the flow run's logs (in the UI too): it never changes the
run's own state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import Flow, State
from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.core import Block
from prefect.client.schemas.objects import FlowRun
from prefect.logging.loggers import flow_run_logger
from prefect.settings import PREFECT_UI_URL

from dbt_pipeline.dbt_invocation import FAILED_STATUSES
from dbt_pipeline.environments import load_environments
from dbt_pipeline.errors import PipelineError
from prefect_flows.run_report import run_directory

PASSED_STATUSES = ("success", "pass", "warn", "no-op")


@dataclass(frozen=True)
class RunSummary:
    """What the alert reports about a run, read from the node table the run saved."""

    passed: int
    failed: list[tuple[str, str, str]]  # (node, status, message)
    skipped: int

    @classmethod
    def read(cls, nodes_file: Path) -> RunSummary | None:
        """The summary of a run, or None if it saved no node table (it crashed before)."""
        if not nodes_file.is_file():
            return None
        rows: list[dict[str, Any]] = json.loads(nodes_file.read_text(encoding="utf-8"))
        return cls(
            passed=sum(row["status"] in PASSED_STATUSES for row in rows),
            failed=[
                (row["node"], row["status"], row["message"] or "") for row in rows if row["status"] in FAILED_STATUSES
            ],
            skipped=sum(row["status"] == "skipped" for row in rows),
        )


def compose_message(*, target: str, flow_run: FlowRun, outcome: str, summary: RunSummary | None, error: str) -> str:
    """The alert's text (Slack mrkdwn, readable as plain text too)."""
    lines = [f"dbt pipeline {outcome} on target `{target}` (flow run {flow_run.name})"]
    if summary is not None:
        lines.append(f"Nodes: {summary.passed} passed, {len(summary.failed)} failed, {summary.skipped} skipped")
        lines += [f"• `{node}` ({status}): {message[:300]}" for node, status, message in summary.failed[:10]]
        if len(summary.failed) > 10:
            lines.append(f"… and {len(summary.failed) - 10} more failing nodes")
    elif error:
        lines.append(error[:500])
    lines.append(f"Flow run: {flow_run_url(flow_run)}")
    return "\n".join(lines)


def flow_run_url(flow_run: FlowRun) -> str:
    """The flow run's page in the Prefect UI (Cloud or self-hosted)."""
    ui = PREFECT_UI_URL.value() or "http://127.0.0.1:4200"
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run.id}"


def load_notification_block(name: str) -> NotificationBlock:
    """`slug/name` loads any notification block type; a bare name is a Slack webhook."""
    if "/" in name:
        block = Block.load(name)
    else:
        from prefect_slack import SlackWebhook  # only when alerting: it pulls in slack_sdk and aiohttp

        block = SlackWebhook.load(name)
    if not isinstance(block, NotificationBlock):
        msg = f"Block {name!r} is a {type(block).__name__}, not a notification block (e.g. slack-webhook/NAME)."
        raise PipelineError(msg)
    return block


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
        summary = RunSummary.read(run_directory(project_dir.resolve(), target, flow_run.name) / "nodes.json")
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
    send_alert(flow, flow_run, outcome="FAILED", error=state.message or "")


def alert_on_crash(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Flow hook: the run's process died (killed, out of memory) or its infrastructure failed."""
    send_alert(flow, flow_run, outcome="CRASHED", error=state.message or "")


def summary_on_success(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Flow hook: a short summary, for environments with notify_on_success."""
    send_alert(flow, flow_run, outcome="succeeded", only_if="success")
