"""`python prefect_flows/pipeline.py --retry-failed`: rerun only what the target's last run left undone.

Real dbt on a slice of the example project (tests/conftest.py), a real Prefect server, the command as a user
types it. The run fails on a staging model (the mart built on it is skipped, the test step never runs); the
retry reruns exactly those two nodes with `dbt retry`, then the test step on every test and docs generate, as
dbt Cloud's "rerun from failure".
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from prefect.client.schemas.objects import StateType

from dbt_pipeline.dbt_invocation import DbtCommandResult, NodeResult
from dbt_pipeline.dbt_project import DbtProject
from prefect_flows.run_record import PendingStep, RunRecord
from tests.conftest import (
    EXAMPLE_PROJECT,
    SLICE_MART,
    Workspace,
    copy_example_slice,
    duckdb_environments,
    make_workspace,
)
from tests.prefect_api import all_task_runs, flow_run_name, node_runs, node_unique_id, read_flow_run, step_runs
from tests.test_console import broken_staging_model
from tests.test_interrupts import LONG_DUCKDB_MODEL, RunningPipeline

RETRY = "--retry-failed"
RETRIED = {"model.shop_analytics.stg_shop__stores", f"model.shop_analytics.{SLICE_MART}"}  # failed, and skipped


@pytest.fixture(scope="module")
def failed(tmp_path_factory: pytest.TempPathFactory, prefect_api: str, prefect_home: Path) -> tuple[Workspace, str]:
    """A workspace whose last run failed on `stg_shop__stores`, and that run's console."""
    root = tmp_path_factory.mktemp("retry-failed")
    project = copy_example_slice(root / "dbt")
    workspace = make_workspace(root, prefect_api, prefect_home)
    workspace.write_environments(duckdb_environments(project, root / "warehouse" / "dev.duckdb", "dev"))
    workspace.setup()
    model = project / "models" / "staging" / "stg_shop__stores.sql"
    good = model.read_text(encoding="utf-8")
    broken_staging_model(project)
    result = workspace.pipeline()
    assert result.returncode == 1, (result.stdout + result.stderr)[-4000:]
    model.write_text(good, encoding="utf-8")
    return workspace, result.stdout + result.stderr


def run_results(run_dir: Path, step: str) -> dict[str, str]:
    """The status of each node of a step of a run, from the run_results.json the flow kept."""
    results = json.loads((run_dir / f"{step}.run_results.json").read_text())["results"]
    return {result["unique_id"]: result["status"] for result in results}


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--select", "orders"], "--select"), (["--changed-only", "--full-refresh"], "--changed-only, --full-refresh")],
)
def test_a_retry_with_a_choice_of_its_own_is_refused_before_any_flow_run(
    failed: tuple[Workspace, str], flags: list[str], named: str
) -> None:
    """--retry-failed takes its nodes from the last run: a selection of its own is one message naming the fix."""
    workspace, _ = failed
    result = workspace.pipeline(RETRY, *flags)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert f"pipeline-dbt-complet failed: --retry-failed cannot be combined with {named}: " in result.stderr
    assert "to retry, or drop --retry-failed to choose what to run." in result.stderr
    assert "Traceback" not in output
    assert "Beginning flow run" not in output


def test_retry_reruns_the_failed_and_skipped_nodes_then_the_steps_the_run_did_not_get_to(
    failed: tuple[Workspace, str], prefect_api: str
) -> None:
    """A retry stopped by SIGTERM behaves like any run (Crashed, one line saying so, no traceback) and leaves the
    retry to do; the next one reruns exactly the failed and skipped nodes, then every test and the docs; then
    there is nothing left to retry."""
    workspace, first = failed
    project = workspace.root / "dbt"
    runs = project / "target" / "dev" / "runs"
    left = {node for node, status in run_results(runs / flow_run_name(first), "run").items() if status != "success"}
    assert left == RETRIED

    model = project / "models" / "staging" / "stg_shop__stores.sql"
    good = model.read_text(encoding="utf-8")
    model.write_text(LONG_DUCKDB_MODEL, encoding="utf-8")
    stopped = RunningPipeline(workspace, RETRY)
    stopped.wait_for_query()
    stopped.stop(signal.SIGTERM)
    output = stopped.output
    assert stopped.process.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), output[-4000:]
    assert output.count("Stopped by SIGTERM: dbt cancelled the queries it was running") == 1, output[-4000:]
    assert "Encountered an error" not in output
    assert "Traceback" not in output
    assert read_flow_run(prefect_api, output).state_type == StateType.CRASHED

    model.write_text(good, encoding="utf-8")
    retry = workspace.pipeline(RETRY)
    output = retry.stdout + retry.stderr
    assert retry.returncode == 0, output[-4000:]
    assert f"Resuming run {flow_run_name(stopped.output)} (steps mode): run: its failed and skipped nodes" in output
    runs_of_retry = all_task_runs(prefect_api, output)
    steps = [run.name.rsplit("-", 1)[0] for run in step_runs(runs_of_retry)]
    assert steps == ["dbt-parse", "dbt-source-freshness", "dbt-run", "dbt-test", "dbt-docs-generate"]
    run_step = next(run for run in step_runs(runs_of_retry) if run.name.startswith("dbt-run-"))
    assert {node_unique_id(run) for run in node_runs(runs_of_retry, run_step)} == RETRIED
    run_dir = runs / flow_run_name(output)
    assert run_results(run_dir, "run") == dict.fromkeys(RETRIED, "success")
    tests = run_results(run_dir, "test")
    manifest = json.loads((project / "target" / "dev" / "manifest.json").read_text())
    assert set(tests) == {node for node, found in manifest["nodes"].items() if found["resource_type"] == "test"}
    assert set(tests.values()) == {"pass"}
    assert (run_dir / "docs" / "index.html").is_file()

    again = workspace.pipeline(RETRY)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert f"nothing to retry on target 'dev': its last run, {flow_run_name(output)}, left no failed" in again.stdout
    assert "Beginning flow run" not in again.stdout + again.stderr


def test_in_build_mode_a_retry_is_one_dbt_retry_of_the_build_then_docs(tmp_path: Path) -> None:
    """What a build run leaves undone, and how the next run resumes it: one `dbt retry` of the build's failed
    and skipped nodes, between parse and docs; a build that could not run at all runs again in full."""
    project = DbtProject.load(EXAMPLE_PROJECT)
    build = RunRecord("nightly", "build").started("nightly", RunRecord("nightly", "build").steps(project))
    assert build.pending == (PendingStep("build"),)
    kept = tmp_path / "build.run_results.json"
    kept.write_text("{}")
    node = NodeResult("model.shop_analytics.orders", "orders", "model", "error", "boom", 0.1)
    failed = DbtCommandResult("dbt build --target dev", False, (node,), None, tmp_path / "dbt.log")
    retried = build.after(next(step for step in build.steps(project) if step.name == "build"), failed, kept)
    assert retried.pending == (PendingStep("build", str(kept)),)
    steps = retried.retry_steps(project)
    assert [(step.name, step.command) for step in steps] == [
        ("parse", ("parse",)),
        ("source-freshness", ("source", "freshness")),
        ("build", ("retry",)),
        ("docs-generate", ("docs", "generate")),
    ]
    could_not_run = DbtCommandResult("dbt build --target dev", False, (), "a lost connection", tmp_path / "dbt.log")
    assert build.after(steps[2], could_not_run, kept) == build  # to run again in full
    assert retried.after(steps[2], DbtCommandResult("dbt retry", True, (), None, kept), kept).retry_steps(project) == []
