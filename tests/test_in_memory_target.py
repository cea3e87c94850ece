"""A DuckDB target on `path: ":memory:"`, as dbt-duckdb documents it: a database that lives for one run.

Real dbt on a slice of the example project against the session's Prefect server. Every dbt step of a run
shares the process's one DuckDB database (dbt-duckdb keeps it for the process), so seeds, models and tests
of a run see each other; what the run built is gone when it ends, so nothing may be compared with it or
resumed from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Workspace
from tests.prefect_api import flow_run_name

pytestmark = pytest.mark.example_slice


@pytest.fixture
def in_memory(workspace: Workspace, dbt_project: Path, tmp_path: Path) -> Workspace:
    """`dev` on an in-memory database, and `prod` on a file: set up."""
    common = {"adapter": "duckdb", "threads": 1, "state_store": str(tmp_path / "state")}
    workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "environments": {
                "dev": {**common, "path": ":memory:"},
                "prod": {**common, "path": str(tmp_path / "prod.duckdb")},
            },
        }
    )
    workspace.setup()
    return workspace


def files_named_memory(*folders: Path) -> list[Path]:
    return [path for folder in folders for path in folder.rglob("*memory*")]


def test_a_run_on_an_in_memory_database_builds_and_tests_everything_and_leaves_no_file(
    in_memory: Workspace, dbt_project: Path, tmp_path: Path
) -> None:
    """The steps of one run share the database: the models read the seeds, the tests read the models. No file
    is named after it (it was once anchored like a path, `infrastructure/:memory:`), and no last good state is
    kept: there is nothing left for a next run to compare with."""
    result = in_memory.pipeline()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    run = dbt_project / "target" / "dev" / "runs" / flow_run_name(output)
    assert (run / "test.run_results.json").is_file()
    assert files_named_memory(tmp_path, Path(__file__).parents[1] / "infrastructure") == []
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("flags", "named", "earlier"),
    [
        (["--changed-only"], "--changed-only", "dev"),
        (["--retry-failed"], "--retry-failed", "dev"),
        (["--target", "prod", "--state-from", "dev"], "--state-from", "dev"),
    ],
)
def test_comparing_with_or_resuming_an_in_memory_run_is_refused_before_any_flow_run(
    in_memory: Workspace, flags: list[str], named: str, earlier: str
) -> None:
    """What an in-memory run built is gone: dbt would select or rerun nodes whose parents are missing. One
    message names the flag, the target, the setting, and the two ways out."""
    result = in_memory.pipeline(*flags)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert (
        f"{named} needs what an earlier run on target {earlier!r} built, and it is gone: "
        f"environments.{earlier}.path is ':memory:'"
    ) in result.stderr
    assert f"Run without {named}, or point target {earlier!r} at a database that stays (in " in result.stderr
    assert "Traceback" not in output
    assert "Beginning flow run" not in output
