"""One run per target: two runs started together on one DuckDB target, or on two targets that write one DuckDB
file, run one after the other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Workspace, duckdb_environments
from tests.prefect_api import all_task_runs, step_runs

# What happens around a run, not what it builds: a slice of the example project (tests/conftest.py).
pytestmark = [pytest.mark.example_slice, pytest.mark.processes]


def test_two_runs_on_one_target_are_serialized(workspace: Workspace, dbt_project: Path, prefect_api: str) -> None:
    """Both runs succeed with no lock error, and the dbt steps of one end before those of the other begin."""
    assert "dbt-target-dev (global concurrency limit" in workspace.setup("--blocks-only").stdout
    outputs = run_together(workspace, [], [])
    assert_one_after_the_other(prefect_api, outputs)


def run_together(workspace: Workspace, *arguments: list[str]) -> list[str]:
    """Start a run of two seeds per `arguments`, all at once, with no retry: each run's output once all are done,
    all successful and without a word of a lock."""
    command = [sys.executable, "prefect_flows/pipeline.py", "--select", "raw_stores raw_customers", "--retries", "0"]
    runs = [
        subprocess.Popen(
            [*command, *each], cwd=REPO, env=workspace.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for each in arguments
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * len(runs), outputs
    assert not any("lock" in output.lower() for output in outputs)
    return outputs


def assert_one_after_the_other(prefect_api: str, outputs: list[str]) -> None:
    """The dbt steps of one run ended before those of the other began."""
    spans = []
    for output in outputs:
        steps = step_runs(all_task_runs(prefect_api, output))
        starts = [step.start_time for step in steps if step.start_time]
        ends = [step.end_time for step in steps if step.end_time]
        spans.append((min(starts), max(ends)))
    first, second = sorted(spans)
    assert first[1] <= second[0], f"the runs overlapped: {spans}"


def test_two_targets_on_one_duckdb_file_take_turns(workspace: Workspace, dbt_project: Path, prefect_api: str) -> None:
    """`dev` and `ci` write one DuckDB file (in two schemas), which DuckDB lets one process at a time write: a
    run on each, started together, both succeed with no lock error, one after the other, through dev's slot.
    (Before, each held its own target's slot: the second failed on DuckDB's lock, or waited on its retries.)"""
    document = duckdb_environments(dbt_project, workspace.root / "warehouse" / "shared.duckdb", "dev", "ci")
    document["environments"]["ci"]["schema"] = "ci"  # type: ignore[index]
    workspace.write_environments(document)
    setup = workspace.setup("--blocks-only").stdout
    assert "dbt-target-dev (global concurrency limit" in setup
    assert "dbt-target-ci" not in setup, setup
    doctor = workspace.doctor("--target", "ci").stdout
    assert "[ ok ] concurrency limit   dbt-target-dev (shared with dev: DuckDB file " in doctor, doctor
    outputs = run_together(workspace, ["--target", "dev"], ["--target", "ci"])
    assert "through the slot of target 'dev'" in outputs[1]
    assert any("Waiting for target 'dev'" in output for output in outputs), outputs
    assert_one_after_the_other(prefect_api, outputs)
