"""What the console of `python prefect_flows/pipeline.py` says, as a user reads it: real dbt, a real Prefect server.

One failing run of the example project (a staging model reads a table that does not exist, so the mart built on
it is skipped) is shared by the tests: a progress line per node, dbt's banner once, and the failure printed once,
at the end, with the command that reruns what failed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Workspace, copy_example_project, duckdb_environments, make_workspace
from tests.prefect_api import flow_run_name, prefect_logs, read_flow_run

BROKEN_STAGING_MODEL = "select id as store_id from no_such_table\n"
NODE_ERROR = "Table with name no_such_table does not exist"  # DuckDB's error, as dbt reports it
BANNER = ("Running with dbt=", "Registered adapter: ", "Found ", "Concurrency: ")
STATUS_WORDS = {"success": "ok", "pass": "pass", "error": "error", "skipped": "skip"}


@dataclass(frozen=True)
class Console:
    """A run's console (stdout and stderr, as a terminal shows them), its exit status and its flow run's folder."""

    output: str
    stderr: str
    returncode: int
    run_dir: Path

    def lines_of(self, step: str) -> list[str]:
        """What the step's task run logged, without the log prefix."""
        pattern = re.compile(rf"Task run 'dbt-{step}-\w+' - (.*)$", re.MULTILINE)
        return pattern.findall(self.output)


def broken_staging_model(project: Path) -> Path:
    """`stg_shop__stores` replaced by a query of a missing table; returns the model's file."""
    model = project / "models" / "staging" / "stg_shop__stores.sql"
    model.write_text(BROKEN_STAGING_MODEL, encoding="utf-8")
    return model


@pytest.fixture(scope="module")
def failing_workspace(tmp_path_factory: pytest.TempPathFactory, prefect_api: str, prefect_home: Path) -> Workspace:
    root = tmp_path_factory.mktemp("console")
    project = copy_example_project(root / "dbt")
    workspace = make_workspace(root, prefect_api, prefect_home)
    workspace.write_environments(duckdb_environments(project, root / "warehouse" / "dev.duckdb", "dev"))
    workspace.setup()
    broken_staging_model(project)
    return workspace


@pytest.fixture(scope="module")
def failed_run(failing_workspace: Workspace) -> Console:
    """The README's command, on a project with a broken model: exactly what a user types."""
    result = failing_workspace.pipeline()
    output = result.stdout + result.stderr
    run_dir = failing_workspace.root / "dbt" / "target" / "dev" / "runs" / flow_run_name(output)
    return Console(output, result.stderr, result.returncode, run_dir)


def test_a_failure_is_printed_once_at_the_end_with_the_command_that_reruns_what_failed(
    failed_run: Console, prefect_api: str
) -> None:
    """The failed node and its error once, in the command's last message, without Prefect's traceback; then the
    command that reruns only what failed. The run's logs in Prefect keep dbt's own account of it."""
    output = failed_run.output
    assert failed_run.returncode == 1, output[-4000:]
    assert output.count(NODE_ERROR) == 1, output[-6000:]
    assert "Traceback" not in output
    assert "NoneType: None" not in output
    assert "Encountered exception" not in output
    last_message = failed_run.stderr[failed_run.stderr.rindex("pipeline-dbt-complet failed: ") :]
    assert "`dbt run --target dev` failed." in last_message
    assert "model.shop_analytics.stg_shop__stores (error): Runtime Error in model stg_shop__stores" in last_message
    assert NODE_ERROR in last_message
    assert last_message.rstrip().endswith(
        "Rerun only what failed: uv run python prefect_flows/pipeline.py --target dev --retry-failed"
    )
    # The step and the flow end in one line each, naming the failed node, not its error again.
    headline = "`dbt run --target dev` failed: 1 of 28 nodes failed (stg_shop__stores)."
    assert re.search(rf"Task run 'dbt-run-\w+' - Finished in state Failed\('{re.escape(headline)}'\)", output)
    assert re.search(rf"Flow run '[\w-]+' - Finished in state Failed\('{re.escape(headline)}'\)", output)

    logs = prefect_logs(prefect_api, read_flow_run(prefect_api, output))
    assert "Failure in model stg_shop__stores" in logs  # dbt's verdict, in the step's logs in the UI
    assert "Rerun only what failed" in logs  # the flow's error, whole


def test_each_node_is_one_progress_line_as_it_finishes(failed_run: Console, prefect_api: str) -> None:
    """`[index/total] status name duration` for every node of every step, the failed one at ERROR; the step says
    first how many nodes it runs. They are the console's: in the UI every node is a task run of its own."""
    for step in ("seed", "snapshot", "run"):
        results = json.loads((failed_run.run_dir / f"{step}.run_results.json").read_text())["results"]
        lines = failed_run.lines_of(step)
        assert f"Running {len(results)} node{'s' if len(results) > 1 else ''}" in lines, lines
        progress = [line for line in lines if line.startswith("[")]
        assert len(progress) == len(results), progress
        for result in results:
            name = result["unique_id"].split(".")[-1]
            duration = "" if result["status"] == "skipped" else r"  \d+\.\d\d s"
            word = STATUS_WORDS[result["status"]]
            expected = rf"\[\d+/{len(results)}\] {word:<6} {name}{duration}"
            assert any(re.fullmatch(expected, line) for line in progress), (expected, progress)
    assert re.search(r"ERROR   \| Task run 'dbt-run-\w+' - \[\d+/28\] error  stg_shop__stores  ", failed_run.output)
    assert "skip   stores" in "\n".join(failed_run.lines_of("run"))

    logs = prefect_logs(prefect_api, read_flow_run(prefect_api, failed_run.output))
    assert not re.search(r"^\[\d+/\d+\] ", logs, re.MULTILINE)


def test_dbt_s_banner_is_said_once_per_run(failed_run: Console) -> None:
    """dbt's version, adapter, project and threads once, by the first step that says each, not at every step."""
    for line in BANNER:
        said = re.findall(rf"Task run 'dbt-[\w-]+' - {re.escape(line)}", failed_run.output)
        assert len(said) == 1, (line, said)
