"""Which failures are worth a retry, and what a failure message tells the user."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbt_pipeline.dbt_invocation import DbtCommandResult, NodeResult


def failed(*messages: str, status: str = "error", error: str | None = None) -> DbtCommandResult:
    nodes = tuple(
        NodeResult(
            unique_id=f"model.p.m{index}",
            name=f"m{index}",
            resource_type="model",
            status=status,
            message=message,
            execution_time=0.1,
        )
        for index, message in enumerate(messages)
    )
    return DbtCommandResult("dbt run --target prod", False, nodes, error, Path("/p/logs/dbt.log"))


@pytest.mark.parametrize(
    "message",
    [
        'IO Error: Could not set lock on file "/data/dev.duckdb": Conflicting lock is held in python (PID 42)',
        "503 Service Unavailable: Visibility check was unavailable. Please retry the request",
        "429 Exceeded rate limits: too many table update operations for this table",
        "Connection reset by peer",
        "Deadline Exceeded: the job did not finish in 300 seconds",
        "500 An internal error occurred and the request could not be completed. Error: Internal Error Encountered",
    ],
)
def test_warehouse_unavailable_is_transient(message: str) -> None:
    """A held lock, a 5xx, a rate limit or a dropped connection may pass: the step is retried."""
    assert failed(message).is_transient_failure


@pytest.mark.parametrize(
    ("messages", "status"),
    [
        (["Catalog Error: Table with name no_such_table does not exist!"], "error"),
        (["Got 3 results, configured to fail if != 0"], "fail"),
        (["Compilation Error in model m0: 'refx' is undefined"], "error"),
        (["Query exceeded limit for bytes billed: 1000. 10485760 or higher required."], "error"),
        (["Could not set lock on file x", "Syntax error: Unexpected keyword FROM"], "error"),
    ],
)
def test_wrong_sql_failed_tests_and_cost_limits_are_not_retried(messages: list[str], status: str) -> None:
    """SQL, compilation, test and cost-limit failures fail alike again: never retried, even beside a lock."""
    assert not failed(*messages, status=status).is_transient_failure


def test_failure_message_names_command_nodes_and_log() -> None:
    """The message names the command, each failed node with its error's first lines, and the debug log."""
    message = failed("Database Error\n  relation x does not exist\n  LINE 1: select *").describe_failure()
    assert message.splitlines()[0] == "`dbt run --target prod` failed."
    assert "  - model.p.m0 (error): Database Error | relation x does not exist | LINE 1: select *" in message
    assert message.endswith("dbt's full log: /p/logs/dbt.log")


def test_cost_guard_failure_says_what_to_change() -> None:
    """A query over maximum_bytes_billed fails with BigQuery's own error and a line naming the limit to raise."""
    message = failed("Query exceeded limit for bytes billed: 1000. 10485760 or higher required.").describe_failure()
    assert "Query exceeded limit for bytes billed: 1000" in message
    assert "Cost guard" in message
    assert "raise maximum_bytes_billed in the environments file" in message
