"""`python -m infrastructure.doctor`: a checklist of what a target needs, with the fix for each failure."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tests.conftest import Workspace, duckdb_environments


def doctor(workspace: Workspace, *args: str) -> tuple[int, str]:
    result = workspace.run("-m", "infrastructure.doctor", *args)
    return result.returncode, result.stdout + result.stderr


def test_ready_target_passes_every_check(workspace: Workspace) -> None:
    """After the setup, every check of the DuckDB target passes: dbt parses and connects."""
    workspace.setup()
    database = workspace.root / "warehouse" / "dev.duckdb"
    database.parent.mkdir()
    duckdb.connect(str(database)).close()
    code, output = doctor(workspace, "--target", "dev")
    assert code == 0, output
    for check in ("environments file", "profile block", "credentials", "dbt parse", "warehouse", "concurrency limit"):
        assert f"[ ok ] {check}" in output
    assert "`dbt debug --connection --target dev` answers" in output
    assert "Ready to run." in output


def test_target_never_set_up_lists_the_fixes(workspace: Workspace, dbt_project: Path) -> None:
    """A target without blocks fails with the setup command as the fix, and dependent checks are skipped."""
    document = duckdb_environments(dbt_project, workspace.root / "qa.duckdb", "dev", "qa")
    document["environments"]["qa"]["notification_block"] = "alerts-qa"  # type: ignore[index]
    workspace.write_environments(document)
    code, output = doctor(workspace, "--target", "qa")
    assert code == 1
    assert "[FAIL] profile block       Prefect block 'dbt-cli-profile-qa'" in output
    assert "setup_profiles --blocks-only --target qa" in output
    assert "[skip] dbt parse           not checked: needs profile" in output
    assert "[FAIL] concurrency limit   dbt-target-qa does not exist" in output
    assert "[FAIL] notification block  alerts-qa" in output
    assert "Not ready" in output


def test_project_that_does_not_parse_fails_the_parse_check(workspace: Workspace, dbt_project: Path) -> None:
    """A model with broken Jinja fails `dbt parse`, and the fix says which command shows why."""
    workspace.setup("--blocks-only")
    (dbt_project / "models" / "marts" / "broken.sql").write_text("select {{ ref('missing_model' }}\n")
    code, output = doctor(workspace, "--target", "dev")
    assert code == 1
    assert "[FAIL] dbt parse" in output
    assert f"cd {dbt_project} && dbt parse --target dev" in output
    assert not (dbt_project / "target").exists(), "the doctor must not write the project's artifacts"


def test_unknown_target_is_named(workspace: Workspace) -> None:
    """An unknown target fails the target check and lists the known ones."""
    code, output = doctor(workspace, "--target", "nope")
    assert code == 1
    assert "Unknown target 'nope'" in output
    assert "Known targets in" in output


def test_timeout_must_be_positive(workspace: Workspace) -> None:
    """--timeout 0 (or negative) is refused by the command line, before any check, naming the flag."""
    code, output = doctor(workspace, "--target", "dev", "--timeout", "0")
    assert code == 2
    assert "--timeout must be more than 0 seconds, got 0" in output
    assert "Traceback" not in output
    assert "doctor: target" not in output, "no check ran"
