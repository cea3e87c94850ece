"""Which failures are worth a retry, and what a failure message tells the user."""

from __future__ import annotations

from pathlib import Path

from dbt_pipeline.dbt_invocation import DbtCommandResult, NodeResult


def failed(
    *messages: str, status: str = "error", transient: bool = False, error: str | None = None
) -> DbtCommandResult:
    nodes = tuple(
        NodeResult(
            unique_id=f"model.p.m{index}",
            name=f"m{index}",
            resource_type="model",
            status=status,
            message=message,
            execution_time=0.1,
            transient=transient,
        )
        for index, message in enumerate(messages)
    )
    return DbtCommandResult("dbt run --target prod", False, nodes, error, Path("/p/logs/dbt.log"))


def test_a_step_is_transient_only_when_every_reason_is() -> None:
    """Retried only if every failed node, and dbt's own error if any, was classified transient (failures.py);
    the corpus of real errors that classification is tested on is tests/test_failures.py."""
    assert failed("lock", "lock", transient=True).is_transient_failure
    busy = failed("lock", transient=True).nodes[0]
    wrong_sql = failed("Catalog Error: Table with name no_such_table does not exist!").nodes[0]
    mixed = DbtCommandResult("dbt run", False, (busy, wrong_sql), None, Path("/p/logs/dbt.log"))
    assert not mixed.is_transient_failure
    assert not failed("Got 3 results, configured to fail if != 0", status="fail").is_transient_failure
    unreachable = DbtCommandResult(
        "dbt run", False, (), "FailedToConnectError: ...", Path("/l"), error_is_transient=True
    )
    assert unreachable.is_transient_failure
    assert not DbtCommandResult("dbt run", False, (busy,), "CompilationError: ...", Path("/l")).is_transient_failure
    assert not DbtCommandResult("dbt run", True, (), None, Path("/l")).is_transient_failure


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
