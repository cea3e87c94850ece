"""Source freshness before anything is built, and what a stale source does (`on_stale_source`), on DuckDB.

The example project's sources are its seeds (their data ends 2025-12-31): a first run loads them,
then one source's `error_after` is tightened to a day, which makes it stale, as a loader that stopped
would. On a slice of the project (tests/conftest.py): its customers, which go stale, and its stores,
which do not.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import Workspace, duckdb_environments
from tests.prefect_api import flow_run_name
from tests.test_changed_only import descendants, executed

pytestmark = pytest.mark.example_slice

SOURCES = Path("models") / "staging" / "_shop__sources.yml"


def make_customers_stale(project: Path) -> None:
    """The `customers` source must have been loaded within a day: its last row is from 2025."""
    document = yaml.safe_load((project / SOURCES).read_text())
    (customers,) = [table for table in document["sources"][0]["tables"] if table["name"] == "customers"]
    customers["config"]["freshness"] = {"error_after": {"count": 1, "period": "day"}}
    (project / SOURCES).write_text(yaml.safe_dump(document, sort_keys=False))


def with_policy(workspace: Workspace, project: Path, policy: str) -> None:
    document = duckdb_environments(project, workspace.root / "warehouse" / "dev.duckdb", "dev")
    document["environments"]["dev"]["on_stale_source"] = policy  # type: ignore[index]
    workspace.write_environments(document)


def test_stale_source_is_warned_skipped_or_fails_the_run(workspace: Workspace, dbt_project: Path) -> None:
    """Freshness runs first. warn: everything is built; skip: every node built on the stale source is left
    out and named; fail: nothing is built, the message names the source and the fix."""
    workspace.setup()
    loaded = workspace.pipeline("--select", "resource_type:seed")  # the freshness of empty tables is unknown
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert re.search(r"The freshness of \d source\(s\) could not be checked", loaded.stdout + loaded.stderr)

    make_customers_stale(dbt_project)
    with_policy(workspace, dbt_project, "skip")
    skipped = workspace.pipeline()
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    output = skipped.stdout + skipped.stderr
    assert "1 source(s) past their freshness error_after on target 'dev': shop.customers." in output
    assert "Left out, with every node built on them (on_stale_source: skip)." in output
    run_dir = dbt_project / "target" / "dev" / "runs" / flow_run_name(output)
    freshness = json.loads((dbt_project / "target" / "dev" / "sources.json").read_text())["results"]
    assert {result["unique_id"]: result["status"] for result in freshness}[
        "source.shop_analytics.shop.customers"
    ] == "error"
    manifest = json.loads((dbt_project / "target" / "dev" / "manifest.json").read_text())
    left_out = descendants(manifest, "source.shop_analytics.shop.customers") - {"source.shop_analytics.shop.customers"}
    assert "model.shop_analytics.stg_shop__customers" in left_out
    built = executed(run_dir)
    assert not built & left_out
    assert "model.shop_analytics.stg_shop__stores" in built  # on a fresh source
    assert "| source-freshness |" in (run_dir / "report.md").read_text()
    # The seeds-only run before it was not a complete one: nothing to compare with yet.
    assert "No previous successful run of this target to compare with." in (run_dir / "report.md").read_text()

    with_policy(workspace, dbt_project, "fail")
    failed = workspace.pipeline()
    assert failed.returncode == 1
    assert "shop.customers" in failed.stderr
    assert "change `on_stale_source` (warn, skip, fail) for this target in the environments file" in failed.stderr
    report = dbt_project / "target" / "dev" / "runs" / flow_run_name(failed.stdout + failed.stderr) / "report.md"
    assert "| seed | | not run | |" in report.read_text()
    # Compared with the skip run, the target's last successful one (its last good state, fetched before the run).
    assert f"kept in `{report.parent / 'previous_run'}`" in report.read_text()
