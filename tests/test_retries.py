"""Retries that tell a busy warehouse from a broken model, with real faults on DuckDB."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO, Workspace
from tests.prefect_api import all_task_runs, node_runs, node_unique_id, step_runs

# What happens around a run, not what it builds: a slice of the example project (tests/conftest.py).
pytestmark = [pytest.mark.example_slice, pytest.mark.processes]

# Holds the write lock of a DuckDB file, as a loader writing into it would, until told to stop.
HOLD_WRITE_LOCK = textwrap.dedent(
    """
    import sys, duckdb
    connection = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.readline()
    connection.close()
    """
)


def add_landing_models(project: Path, landing: Path) -> None:
    """Two models over a landing database that another process loads: one reads it, one depends on it."""
    staging = project / "models" / "staging"
    (staging / "stg_landing__events.sql").write_text(
        "{{ config(materialized='table', pre_hook=\"attach if not exists '"
        + str(landing)
        + "' as landing (read_only)\") }}\n"
        "select id, kind from landing.main.events\n"
    )
    (project / "models" / "marts" / "event_kinds.sql").write_text(
        "select kind, count(*) as events from {{ ref('stg_landing__events') }} group by kind\n"
    )
    with duckdb.connect(str(landing)) as database:
        database.execute("create table events as select range as id, 'kind_' || (range % 3) as kind from range(30)")


@pytest.mark.parametrize(("mode", "step", "nodes"), [("steps", "run", 5), ("build", "build", 23)])
def test_held_lock_is_retried_rerunning_only_the_affected_nodes(
    workspace: Workspace, dbt_project: Path, prefect_api: str, mode: str, step: str, nodes: int
) -> None:
    """A lock held by another process fails one model: after the delay only it and the node it skipped run again.

    In both modes: the `run` step's models, or every node of the one `build` (seeds and tests too).
    """
    landing = workspace.root / "landing.duckdb"
    add_landing_models(dbt_project, landing)
    workspace.setup()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITE_LOCK, str(landing)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdin is not None
    assert holder.stdout.readline().strip() == "locked"
    pipeline = subprocess.Popen(
        [sys.executable, "prefect_flows/pipeline.py", "--mode", mode, "--retries", "2", "--retry-delay", "2"],
        cwd=REPO, env=workspace.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert pipeline.stdout is not None
    lines = []
    try:
        for line in pipeline.stdout:
            lines.append(line)
            if re.search(rf"Task run 'dbt-{step}-\w+' - .*Retry", line) and holder.poll() is None:
                holder.stdin.close()  # the loader finishes during the retry delay
        pipeline.wait(timeout=60)
    finally:
        holder.kill()
        pipeline.kill()
    output = "".join(lines)
    assert pipeline.returncode == 0, output[-4000:]
    assert "rerunning only failed and skipped nodes (dbt retry)" in output

    runs = all_task_runs(prefect_api, output)
    run_step = next(run for run in step_runs(runs) if run.name.startswith(f"dbt-{step}-"))
    assert run_step.run_count == 2
    attempts: dict[str, list[str]] = defaultdict(list)
    for run in node_runs(runs, run_step):
        assert run.state is not None
        attempts[node_unique_id(run)].append((run.state.message or "").split(":")[0])  # dbt's status opens it
    landing_nodes = {"model.shop_analytics.stg_landing__events", "model.shop_analytics.event_kinds"}
    assert {node for node, states in attempts.items() if len(states) == 2} == landing_nodes
    assert sorted(attempts["model.shop_analytics.stg_landing__events"]) == ["error", "success"]
    assert sorted(attempts["model.shop_analytics.event_kinds"]) == ["skipped", "success"]
    assert all(states in (["success"], ["pass"]) for node, states in attempts.items() if node not in landing_nodes)
    assert len(attempts) == nodes
    with duckdb.connect(str(workspace.root / "warehouse" / "dev.duckdb"), read_only=True) as database:
        assert database.execute("select sum(events) from main.event_kinds").fetchone() == (30,)
