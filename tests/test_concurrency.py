"""One run per target: two runs started together on one DuckDB target run one after the other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Workspace
from tests.prefect_api import all_task_runs, step_runs

# What happens around a run, not what it builds: a slice of the example project (tests/conftest.py).
pytestmark = [pytest.mark.example_slice, pytest.mark.processes]


def test_two_runs_on_one_target_are_serialized(workspace: Workspace, dbt_project: Path, prefect_api: str) -> None:
    """Both runs succeed with no lock error, and the dbt steps of one end before those of the other begin."""
    assert "dbt-target-dev (global concurrency limit" in workspace.setup("--blocks-only").stdout
    command = [sys.executable, "prefect_flows/pipeline.py", "--select", "raw_stores raw_customers", "--retries", "0"]
    runs = [
        subprocess.Popen(
            command, cwd=REPO, env=workspace.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert not any("lock" in output.lower() for output in outputs)

    spans = []
    for output in outputs:
        steps = step_runs(all_task_runs(prefect_api, output))
        starts = [step.start_time for step in steps if step.start_time]
        ends = [step.end_time for step in steps if step.end_time]
        spans.append((min(starts), max(ends)))
    first, second = sorted(spans)
    assert first[1] <= second[0], f"the runs overlapped: {spans}"
