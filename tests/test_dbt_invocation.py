"""Which failures are worth a retry, what a failure message tells the user, and what a dbt command prints."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from dbt_pipeline.dbt_invocation import DbtCommandResult, NodeResult, invoke_dbt, write_manifest


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


def test_a_log_file_that_cannot_be_written_is_not_a_traceback_per_event(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """dbt's log file on a full disk: the command runs, and stderr is not flooded with one `--- Logging error ---`
    and its traceback per dbt event (5,778 of them for one run of the example project, before). The full disk is
    /dev/full, the kernel's always-full device, as a test cannot fill a real disk here."""
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: logged\nversion: '1.0'\nconfig-version: 2\nprofile: logged\n", encoding="utf-8"
    )
    profile = {"logged": {"target": "dev", "outputs": {"dev": {"type": "duckdb", "path": str(tmp_path / "w.duckdb")}}}}
    (project / "profiles.yml").write_text(yaml.safe_dump(profile), encoding="utf-8")
    (project / "models" / "one.sql").write_text("select 1 as id", encoding="utf-8")
    (project / "logs").mkdir()
    (project / "logs" / "dbt.log").symlink_to("/dev/full")

    arguments = ["--project-dir", str(project), "--profiles-dir", str(project), "--log-level-file", "debug"]
    parse = invoke_dbt(["parse", *arguments], command="dbt parse", project_dir=project)
    assert parse.manifest is not None, parse.describe_failure()
    run = invoke_dbt(
        ["run", "--no-write-json", *arguments], command="dbt run", project_dir=project, results_to=project / "target"
    )
    write_manifest(parse.manifest, project / "target")  # both log the file they write, as the pipeline's run does

    assert run.success, run.describe_failure()
    assert (project / "target" / "run_results.json").is_file()
    errors = capfd.readouterr().err
    assert "Logging error" not in errors, errors[:3000]
    assert logging.raiseExceptions, "Python's logging reports its handlers' errors again after the command"
