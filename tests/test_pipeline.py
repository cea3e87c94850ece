"""`python prefect_flows/pipeline.py` end to end: real dbt on DuckDB, a real Prefect server."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import duckdb
import pytest
from prefect.client.schemas.objects import TaskRun

from dbt_pipeline.state_store import StateStore
from tests.conftest import Workspace, duckdb_environments
from tests.prefect_api import all_task_runs, flow_run_name, node_runs, node_unique_id, read_flow_run, step_runs

STEPS = ["dbt-parse", "dbt-source-freshness", "dbt-seed", "dbt-snapshot", "dbt-run", "dbt-test", "dbt-docs-generate"]
NODE_STEPS = ["seed", "snapshot", "run", "test"]
STATE_TYPE_OF_STATUS = {
    **dict.fromkeys(["success", "pass", "warn"], "COMPLETED"),
    **dict.fromkeys(["error", "fail"], "FAILED"),
    "skipped": "CANCELLED",
}


def assert_nodes_mirror_run_results(runs: list[TaskRun], run_dir: Path, node_steps: list[str] = NODE_STEPS) -> None:
    """Each node of each step's run_results.json is a child task run of its step, in the matching final state."""
    steps = {run.name.rsplit("-", 1)[0].removeprefix("dbt-"): run for run in step_runs(runs)}
    for step in node_steps:
        results = json.loads((run_dir / f"{step}.run_results.json").read_text())["results"]
        expected = {result["unique_id"]: result["status"] for result in results}
        mirrored = {node_unique_id(run): run for run in node_runs(runs, steps[step])}
        assert set(mirrored) == set(expected), step
        for unique_id, status in expected.items():
            run = mirrored[unique_id]
            assert run.state_name is not None
            assert run.state_type is not None
            assert run.state_type.value == STATE_TYPE_OF_STATUS[status], unique_id
            assert run.state_name == run.state_type.value.title(), unique_id  # the UI's States filter finds it
            assert run.state is not None
            assert (run.state.message or "").startswith(status), unique_id
            assert run.name in unique_id.split("."), (run.name, unique_id)
    assert not [run for run in runs if run.state_type is None or run.state_type.value in ("RUNNING", "PENDING")]


def csv_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def test_full_pipeline_builds_the_example_project(workspace: Workspace, dbt_project: Path, prefect_api: str) -> None:
    """Setup then the pipeline: every step is a task in order, every model is built, every test ran and passed."""
    workspace.setup()
    result = workspace.pipeline()
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr

    runs = all_task_runs(prefect_api, output)
    assert [run.name.rsplit("-", 1)[0] for run in step_runs(runs)] == STEPS
    run_dir = dbt_project / "target" / "dev" / "runs" / flow_run_name(output)
    assert_nodes_mirror_run_results(runs, run_dir)
    report = (run_dir / "report.md").read_text()
    assert "dbt run succeeded" in report
    assert (run_dir / "docs" / "index.html").is_file()
    assert "catalog.json" in {path.name for path in (run_dir / "docs").iterdir()}
    assert f"--directory {run_dir / 'docs'}" in report
    rows = json.loads((run_dir / "nodes.json").read_text())
    nodes = {row["node"]: row for row in rows if row["step"] != "source-freshness"}
    assert len(nodes) == 264
    # Freshness ran first, on an empty warehouse: its sources are in the table, not checked yet.
    checked = [row["status"] for row in rows if row["step"] == "source-freshness"]
    assert checked == ["runtime error"] * 7  # the 7 sources with a loaded_at_field
    assert (nodes["orders"]["status"], nodes["raw_orders"]["rows_affected"]) == ("success", 800)
    timeline = (run_dir / "timeline.svg").read_text()
    assert ">orders<" in timeline  # every model labelled
    assert ">raw_orders<" in timeline
    assert "critical path" in timeline.lower()

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
    # As after `dbt test; dbt docs generate`: the target's run_results.json is the last node step's.
    last_results = (dbt_project / "target" / "dev" / "run_results.json").read_text()
    assert last_results == (run_dir / "test.run_results.json").read_text()
    assert not (run_dir / "docs-generate.run_results.json").exists()
    # The docs hold every node's compiled SQL: the analysis, which no step runs, was compiled for them alone.
    docs_nodes = json.loads((run_dir / "docs" / "manifest.json").read_text())["nodes"].values()
    uncompiled = [node["unique_id"] for node in docs_nodes if node["resource_type"] != "seed" and not node["compiled"]]
    assert not uncompiled
    assert any(node["resource_type"] == "analysis" for node in docs_nodes)
    assert "Compiling 1 node that the run's steps did not run, for the docs" in output
    assert "`dbt docs generate --no-compile --target dev`" in report
    assert not list((workspace.root / "tmp").glob("dbt-profiles-*")), "the rendered profile must be removed"

    # The run is the target's last good state: its manifest and every node's result, for dbt's --state.
    state = StateStore.at(workspace.root / "warehouse" / "state", "dev").fetch(workspace.root / "last-good")
    assert state is not None
    assert state.run_id == flow_run_name(output)
    assert (state.metadata["mode"], state.metadata["flow_run_id"]) == (
        "steps",
        str(read_flow_run(prefect_api, output).id),
    )
    # Freshness ran, but on an empty warehouse it could read no load time: nothing to compare a later one with.
    assert set(state.files) == {"manifest.json", "run_results.json"}
    results = json.loads((state.path / "run_results.json").read_text())["results"]
    assert len(results) == 264
    assert json.loads((state.path / "manifest.json").read_text())["nodes"].keys() == manifest["nodes"].keys()


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
    log = dbt_project / "logs" / "dbt.log"
    assert f"dbt's full log: {log}" in result.stderr
    assert "no_such_table" in log.read_text()

    output = result.stdout + result.stderr
    runs = all_task_runs(prefect_api, output)
    run_step = next(run for run in step_runs(runs) if run.name.startswith("dbt-run"))
    assert run_step.state is not None
    assert run_step.state.is_failed()
    assert run_step.run_count == 1
    nodes = {node_unique_id(run): run for run in node_runs(runs, run_step)}
    broken = nodes["model.shop_analytics.broken_revenue"]
    assert (broken.state_name, broken.state_type.value if broken.state_type else None) == ("Failed", "FAILED")
    assert broken.state is not None
    assert "no_such_table" in (broken.state.message or "")
    assert not [run for run in runs if run.state_type is None or run.state_type.value in ("RUNNING", "PENDING")]
    report = (dbt_project / "target" / "dev" / "runs" / flow_run_name(output) / "report.md").read_text()
    assert "dbt run FAILED" in report
    assert "`model.shop_analytics.broken_revenue` **error**" in report
    assert "| test | | not run | |" in report
    assert not (workspace.root / "warehouse" / "state" / "dev").exists(), "a failed run is never a last good state"
    # dbt's artifacts of the run are in the target's folder as dbt leaves them: the manifest with the code the
    # steps compiled, the failed step's results with the arguments a `dbt retry` typed by hand reruns it with.
    target = dbt_project / "target" / "dev"
    compiled = json.loads((target / "manifest.json").read_text())["nodes"]["model.shop_analytics.broken_revenue"]
    assert "no_such_table" in compiled["compiled_code"]
    run_results = json.loads((target / "run_results.json").read_text())
    assert run_results["args"]["which"] == "run"
    assert run_results["args"].get("write_json", True), "a `dbt retry` by hand would write no artifact"
    statuses = {result["unique_id"]: result["status"] for result in run_results["results"]}
    assert statuses["model.shop_analytics.broken_revenue"] == "error"
    assert not list((workspace.root / "tmp").glob("dbt-profiles-*")), (
        "the rendered profile must be removed on failure too"
    )


def test_build_mode_tests_each_model_as_it_is_built_and_skips_only_what_depends_on_a_failure(
    workspace: Workspace, dbt_project: Path, prefect_api: str
) -> None:
    """`mode: build` in the environments file: one `dbt build`, tests right after their model; a failing
    test on one staging model skips only that model's descendants, everything else is built and tested."""
    (dbt_project / "tests" / "assert_no_store_exists.sql").write_text("select * from {{ ref('stg_shop__stores') }}\n")
    document = duckdb_environments(dbt_project, workspace.root / "warehouse" / "dev.duckdb", "dev")
    document["environments"]["dev"]["mode"] = "build"  # type: ignore[index]
    workspace.write_environments(document)
    workspace.setup()
    result = workspace.pipeline("--retries", "0")
    assert result.returncode == 1
    assert "test.shop_analytics.assert_no_store_exists (fail)" in result.stderr
    assert "`dbt build --target dev` failed" in result.stderr

    output = result.stdout + result.stderr
    runs = all_task_runs(prefect_api, output)
    assert [run.name.rsplit("-", 1)[0] for run in step_runs(runs)] == ["dbt-parse", "dbt-source-freshness", "dbt-build"]
    run_dir = dbt_project / "target" / "dev" / "runs" / flow_run_name(output)
    assert_nodes_mirror_run_results(runs, run_dir, ["build"])
    results = json.loads((run_dir / "build.run_results.json").read_text())["results"]
    status = {result["unique_id"]: result["status"] for result in results}
    assert len(status) == 265  # every seed, snapshot, model and test of the project, and the new test
    skipped = {unique_id for unique_id, value in status.items() if value == "skipped"}
    # Only `stores` (the one model built on stg_shop__stores) and its tests are skipped.
    assert "model.shop_analytics.stores" in skipped
    assert all("stores" in unique_id for unique_id in skipped), skipped
    assert status["model.shop_analytics.orders"] == status["model.shop_analytics.customers"] == "success"
    assert [value for unique_id, value in status.items() if unique_id.startswith("test.")].count("pass") > 200
    # Interleaved: dbt ran tests (in execution order) before it built the last model.
    order = [result["unique_id"].split(".")[0] for result in results]
    assert order.index("test") < len(order) - 1 - order[::-1].index("model")

    report = (run_dir / "report.md").read_text()
    assert "| docs-generate | | not run | |" in report
    with duckdb.connect(str(workspace.root / "warehouse" / "dev.duckdb"), read_only=True) as database:
        tables = {row[0] for row in database.execute("select table_name from information_schema.tables").fetchall()}
    assert {"orders", "customers", "stg_shop__stores"} <= tables
    assert "stores" not in tables


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
    assert re.search(r"dbt-run-\w+' - Done\. PASS=1 WARN=0 ERROR=0 SKIP=0", result.stdout + result.stderr)
    with duckdb.connect(str(workspace.root / "warehouse" / "dev.duckdb"), read_only=True) as database:
        tables = {row[0] for row in database.execute("select table_name from information_schema.tables").fetchall()}
    assert "a" in tables
    assert "b" not in tables

    # The whole project: its steps compiled every node, so docs generate does not compile them again, and
    # the docs still hold the compiled SQL of each.
    result = workspace.pipeline("--project-dir", str(other))
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = other / "target" / "dev" / "runs" / flow_run_name(result.stdout + result.stderr)
    assert "`dbt docs generate --no-compile --target dev`" in (run_dir / "report.md").read_text()
    docs = json.loads((run_dir / "docs" / "manifest.json").read_text())["nodes"]
    assert {node["name"]: node["compiled_code"].strip() for node in docs.values()} == {
        "a": "select 1 as id",
        "b": 'select id from "dev"."main"."a"',
    }
    # dbt would write manifest.json at the end of each of the steps; each run writes it once (the first
    # run's docs generate compiled, and wrote it).
    assert (other / "logs" / "dbt.log").read_text().count("Wrote artifact WritableManifest") == 2


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
