"""`--changed-only`: build what changed since the target's last good state, on DuckDB, end to end.

Real dbt runs against the session's Prefect server; the last good state lives in the workspace's own
folder (tests.conftest.duckdb_environments). On a slice of the example project (tests/conftest.py), whose
mart over the stores is built on the model the test changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from dbt_pipeline.state_store import StateStore
from tests.conftest import Workspace
from tests.prefect_api import flow_run_name

pytestmark = pytest.mark.example_slice
BUILT_KINDS = ("model", "seed", "snapshot", "test")


def descendants(manifest: dict[str, object], unique_id: str) -> set[str]:
    """`unique_id` and every node downstream of it, from dbt's child map."""
    children: dict[str, list[str]] = manifest["child_map"]  # type: ignore[assignment]
    found, todo = {unique_id}, [unique_id]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def executed(run_dir: Path) -> set[str]:
    """The nodes the run's steps executed, from the run_results.json each step left."""
    return {
        result["unique_id"]
        for path in run_dir.glob("*.run_results.json")
        if not path.name.startswith("docs-generate")
        for result in json.loads(path.read_text())["results"]
    }


def test_changed_only_builds_what_changed_and_nothing_when_nothing_did(workspace: Workspace, dbt_project: Path) -> None:
    """No state yet: everything, said so. Nothing changed: no node, no docs. One model edited: exactly it,
    what it feeds and their tests."""
    workspace.setup()
    first = workspace.pipeline("--changed-only", "--mode", "build")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "has no last good state in" in first.stdout + first.stderr
    runs = dbt_project / "target" / "dev" / "runs"
    manifest = json.loads((dbt_project / "target" / "dev" / "manifest.json").read_text())
    everything = {node for node, found in manifest["nodes"].items() if found["resource_type"] in BUILT_KINDS}
    assert executed(runs / flow_run_name(first.stdout + first.stderr)) == everything

    unchanged = workspace.pipeline("--changed-only", "--mode", "build")
    assert unchanged.returncode == 0, unchanged.stderr[-3000:]
    output = unchanged.stdout + unchanged.stderr
    assert "Comparing with the last good state of target 'dev'" in output
    run_dir = runs / flow_run_name(output)
    assert executed(run_dir) == set()
    # The comparison picks nothing: no dbt command starts only to say "Nothing to do".
    assert "Nothing to build: the selection compared with the last good state picks no node" in output
    assert "Nothing to do" not in output
    report = (run_dir / "report.md").read_text()
    assert report.startswith("# dbt run succeeded"), report[:200]  # steps left out for want of work: no failure
    assert "| build | | not needed | |" in report
    assert "| docs-generate | | not needed | |" in report
    assert "**0 built**, 5 reused" in report
    retry = workspace.pipeline("--retry-failed")
    assert retry.returncode == 0, retry.stderr[-3000:]
    assert "nothing to retry on target 'dev'" in retry.stdout + retry.stderr
    # A selection of the user's own that picks nothing is left to dbt, whose warning names the culprit.
    typo = workspace.pipeline("--changed-only", "--mode", "build", "--select", "stg_shop__storez")
    assert typo.returncode == 0, typo.stderr[-3000:]
    assert "The selection criterion 'stg_shop__storez' does not match any enabled nodes" in typo.stdout + typo.stderr

    model = dbt_project / "models" / "staging" / "stg_shop__stores.sql"
    model.write_text(model.read_text() + "\n-- a comment is a change of code\n")
    edited = workspace.pipeline("--changed-only")  # steps mode: the same selection for each step
    assert edited.returncode == 0, edited.stderr[-3000:]
    run_dir = runs / flow_run_name(edited.stdout + edited.stderr)
    manifest = json.loads((dbt_project / "target" / "dev" / "manifest.json").read_text())
    expected = descendants(manifest, "model.shop_analytics.stg_shop__stores")
    assert executed(run_dir) == expected
    assert "model.shop_analytics.stores_per_channel" in expected
    assert "model.shop_analytics.stg_shop__customers" not in expected
    # The report says, for every model, seed and snapshot, whether it was built or reused, and why.
    report = (run_dir / "report.md").read_text()
    assert "**2 built**, 3 reused (models, seeds, snapshots)." in report
    assert "| `stg_shop__stores` | **built** | its code or config changed |" in report
    assert "| `stores_per_channel` | **built** | a node it is built on changed |" in report
    assert "| `stg_shop__customers` | reused | unchanged since the last good state of dev |" in report
    assert "| `raw_stores` | reused | unchanged since the last good state of dev |" in report

    # A loader adds a customer: the source's newest load time moves on, its descendants alone are built.
    with duckdb.connect(str(workspace.root / "warehouse" / "dev.duckdb")) as database:
        database.execute(
            "insert into main.raw_customers select * replace "
            "(id + 100000 as id, 'new.' || email as email, now()::timestamp as updated_at) "
            "from main.raw_customers order by id limit 1"
        )
    new_rows = workspace.pipeline("--changed-only", "--mode", "build")
    assert new_rows.returncode == 0, new_rows.stderr[-3000:]
    run_dir = runs / flow_run_name(new_rows.stdout + new_rows.stderr)
    source = "source.shop_analytics.shop.customers"
    assert executed(run_dir) == descendants(manifest, source) - {source}
    report = (run_dir / "report.md").read_text()
    assert "| `stg_shop__customers` | **built** | a source it reads has newer data |" in report
    # ...and that run, which built all that had changed, is the next one's last good state.
    state = StateStore.at(workspace.root / "warehouse" / "state", "dev").fetch(workspace.root / "last-good")
    assert state is not None
    assert state.run_id == run_dir.name
    assert "sources.json" in state.files
