"""`python prefect_flows/pipeline.py` end to end: real dbt on DuckDB, a real Prefect server."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import TaskRun
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.conftest import Workspace

STEPS = ["dbt-seed", "dbt-snapshot", "dbt-run", "dbt-test", "dbt-docs-generate"]


def flow_run_name(output: str) -> str:
    match = re.search(r"Beginning flow run '([^']+)' for flow 'pipeline-dbt-complet'", output)
    assert match, output
    return match.group(1)


def task_runs(prefect_api: str, output: str) -> list[TaskRun]:
    """The task runs of the flow run whose log is `output`, in start order."""
    with temporary_settings({PREFECT_API_URL: prefect_api}), get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name(output)]))
        )
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run.id]}))
    return sorted(runs, key=lambda task_run: task_run.start_time or task_run.expected_start_time)


def csv_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def test_full_pipeline_builds_the_example_project(workspace: Workspace, dbt_project: Path, prefect_api: str) -> None:
    """Setup then the pipeline: every step is a task in order, every model is built, every test ran and passed."""
    workspace.setup()
    result = workspace.pipeline()
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr

    runs = task_runs(prefect_api, output)
    assert [run.name.rsplit("-", 1)[0] for run in runs] == STEPS
    assert all(run.state is not None and run.state.is_completed() for run in runs)

    manifest = json.loads((dbt_project / "target" / "dev" / "manifest.json").read_text())
    nodes = manifest["nodes"].values()
    models = [
        node for node in nodes if node["resource_type"] == "model" and node["config"]["materialized"] != "ephemeral"
    ]
    tests = [node for node in nodes if node["resource_type"] in ("test", "unit_test")] + list(
        manifest.get("unit_tests", {}).values()
    )
    assert len(models) >= 25

    with duckdb.connect(str(workspace.root / "warehouse" / "dev.duckdb"), read_only=True) as database:
        for seed in sorted((dbt_project / "seeds").glob("*.csv")):
            (count,) = database.execute(f"select count(*) from main.{seed.stem}").fetchone()  # type: ignore[misc]
            assert count == csv_rows(seed), seed.stem
        for model in models:
            (count,) = database.execute(f'select count(*) from main."{model["alias"]}"').fetchone()  # type: ignore[misc]
            assert count > 0, f"{model['unique_id']} is empty"
        (customers,) = database.execute("select count(*) from main.customers").fetchone()  # type: ignore[misc]
        assert customers == csv_rows(dbt_project / "seeds" / "raw_customers.csv")
        (orders,) = database.execute("select count(*) from main.orders").fetchone()  # type: ignore[misc]
        assert orders == csv_rows(dbt_project / "seeds" / "raw_orders.csv")

    done = re.search(r"dbt-test-\w+' - Done\. PASS=(\d+) WARN=(\d+) ERROR=(\d+)", output)
    assert done, output[-3000:]
    assert (int(done.group(1)) + int(done.group(2)), int(done.group(3))) == (len(tests), 0)
    assert (dbt_project / "target" / "dev" / "catalog.json").is_file()
    assert not list((workspace.root / "tmp").glob("dbt-profiles-*")), "the rendered profile must be removed"


def test_broken_model_fails_the_flow_naming_the_node_without_retrying(
    workspace: Workspace, dbt_project: Path, prefect_api: str
) -> None:
    """A SQL error fails the run with exit 1, names the model and its error, and is attempted exactly once."""
    (dbt_project / "models" / "marts" / "broken_revenue.sql").write_text("select amount from no_such_table\n")
    workspace.setup()
    result = workspace.pipeline("--retries", "2", "--retry-delay", "0")
    assert result.returncode == 1
    assert "model.shop_analytics.broken_revenue (error)" in result.stderr
    assert "no_such_table" in result.stderr
    assert "`dbt run --target dev` failed" in result.stderr

    run_step = next(
        run for run in task_runs(prefect_api, result.stdout + result.stderr) if run.name.startswith("dbt-run")
    )
    assert run_step.state is not None
    assert run_step.state.is_failed()
    assert run_step.run_count == 1
    assert not list((workspace.root / "tmp").glob("dbt-profiles-*")), (
        "the rendered profile must be removed on failure too"
    )


def test_select_and_project_dir_run_another_project(workspace: Workspace, dbt_project: Path, tmp_path: Path) -> None:
    """--project-dir runs any project whatever its profile name; --select limits the nodes."""
    other = tmp_path / "other_project"
    (other / "models").mkdir(parents=True)
    (other / "dbt_project.yml").write_text(
        "name: other\nprofile: someone_elses_profile\nversion: '1.0'\nconfig-version: 2\n"
    )
    (other / "models" / "a.sql").write_text("select 1 as id\n")
    (other / "models" / "b.sql").write_text("select id from {{ ref('a') }}\n")
    workspace.setup("--blocks-only")
    result = workspace.pipeline("--project-dir", str(other), "--select", "a")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 of 1 OK created sql view model main.a" in result.stdout + result.stderr
    with duckdb.connect(str(workspace.root / "warehouse" / "dev.duckdb"), read_only=True) as database:
        tables = {row[0] for row in database.execute("select table_name from information_schema.tables").fetchall()}
    assert "a" in tables
    assert "b" not in tables


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "staging"], "Unknown target 'staging'. Known targets in"),
        (["--target", "qa"], "Prefect block 'dbt-cli-profile-qa' (dbt CLI Profile) not found on this Prefect API. "
            "Create it with: uv run python -m infrastructure.setup_profiles --blocks-only --target qa"),
        (["--project-dir", "/nonexistent/project"], "dbt project directory not found: /nonexistent/project"),
    ],
)  # fmt: skip
def test_user_errors_are_one_clear_message(
    workspace: Workspace, dbt_project: Path, args: list[str], message: str
) -> None:
    """A wrong target, a missing block or a wrong project dir: exit 1, the fix in one message, no traceback."""
    workspace.write_environments(
        {"defaults": {"dbt_project_dir": str(dbt_project)},
         "environments": {"dev": {"adapter": "duckdb", "path": "dev.db"}, "qa": {"adapter": "duckdb", "path": "qa.db"}}}
    )  # fmt: skip
    workspace.setup("--target", "dev")
    result = workspace.pipeline(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
