"""`python -m infrastructure.doctor`: a checklist of what a target needs, with the fix for each failure."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from infrastructure.doctor.checks import space_the_last_run_took
from tests.conftest import Workspace, duckdb_environments
from tests.postgres_server import PostgresServer
from tests.test_postgres import postgres_environment


def doctor(workspace: Workspace, *args: str) -> tuple[int, str]:
    result = workspace.doctor(*args)
    return result.returncode, result.stdout + result.stderr


def test_ready_target_passes_every_check(workspace: Workspace) -> None:
    """After the setup, every check of the DuckDB target passes: dbt parses and connects."""
    workspace.setup()
    database = workspace.root / "warehouse" / "dev.duckdb"
    database.parent.mkdir()
    duckdb.connect(str(database)).close()
    code, output = doctor(workspace, "--target", "dev")
    assert code == 0, output
    checks = ("environments file", "profile block", "credentials", "disk space", "dbt parse", "warehouse")
    for check in (*checks, "concurrency limit"):
        assert f"[ ok ] {check}" in output
    assert "[ ok ] target              dev (duckdb, 1 thread)" in output
    assert "`dbt debug --connection --target dev` answers" in output
    assert "Ready to run." in output


def test_target_never_set_up_lists_the_fixes(workspace: Workspace, dbt_project: Path) -> None:
    """A target without blocks fails with the setup command as the fix, and dependent checks are skipped."""
    document = duckdb_environments(dbt_project, workspace.root / "qa.duckdb", "dev", "qa")
    document["environments"]["dev"]["path"] = str(workspace.root / "dev.duckdb")  # type: ignore[index]  # qa's own slot
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


def test_postgres_target_passes_every_check_and_names_a_missing_password(
    workspace: Workspace, dbt_project: Path, postgres_server: PostgresServer
) -> None:
    """On a real PostgreSQL server the doctor connects with the run's password; without one, it says where to set it."""
    postgres_environment(workspace, dbt_project, postgres_server)
    workspace.setup("--blocks-only")
    workspace.env["DBT_ENV_SECRET_POSTGRES_PASSWORD"] = postgres_server.password
    code, output = doctor(workspace, "--target", "pg")
    assert code == 0, output
    assert f"[ ok ] credentials         dbt@127.0.0.1:{postgres_server.port}/postgres" in output
    assert "password from $DBT_ENV_SECRET_POSTGRES_PASSWORD" in output
    assert "`dbt debug --connection --target pg` answers" in output
    assert postgres_server.password not in output

    workspace.env.pop("DBT_ENV_SECRET_POSTGRES_PASSWORD")
    code, output = doctor(workspace, "--target", "pg")
    assert code == 1
    assert "[FAIL] credentials         No PostgreSQL password for target 'pg'" in output
    assert "[skip] dbt parse" in output
    assert "Traceback" not in output


def test_unreachable_prefect_api_fails_one_check_and_skips_those_that_need_it(workspace: Workspace) -> None:
    """With the API down the doctor still checks the rest, and says once how to bring the API back."""
    workspace.env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
    code, output = doctor(workspace, "--target", "dev")
    assert code == 1
    assert "[FAIL] Prefect API         Cannot reach the Prefect API at http://127.0.0.1:9/api" in output
    assert output.count("prefect server start") == 1
    for check in ("profile block", "concurrency limit", "notification block"):
        assert f"[skip] {check:<19} not checked: needs api" in output
    assert "[ ok ] dbt project" in output
    assert "Traceback" not in output


def test_duckdb_path_under_a_file_is_refused_with_the_key_to_change(workspace: Workspace, dbt_project: Path) -> None:
    """A DuckDB path whose folder cannot be created (it would sit under a file) fails the credentials check.

    The setup refuses such a path: here a file takes the place of the folder after the setup."""
    workspace.write_environments(duckdb_environments(dbt_project, dbt_project / "data" / "sub" / "x.duckdb", "dev"))
    workspace.setup("--blocks-only")
    (dbt_project / "data").write_text("not a folder\n")
    code, output = doctor(workspace, "--target", "dev")
    assert code == 1
    assert f"cannot create the DuckDB file {dbt_project}/data/sub/x.duckdb: {dbt_project}/data is a file" in output
    assert "Point environments.dev.path at a file in a folder you can write" in output


@contextmanager
def small_disk(folder: Path, size: str) -> Iterator[None]:
    """A filesystem of `size` mounted on `folder`, as a nearly full disk: only root may mount one (CI runs as
    root), and a container only with the right to mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    folder.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    mounted = subprocess.run(mount, capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"this machine does not let root mount a filesystem: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def test_a_disk_without_room_for_a_run_fails_the_disk_check_with_what_to_free(
    workspace: Workspace, dbt_project: Path
) -> None:
    """The disk under the project's target folder has less room than a run writes there: the doctor says so
    (a run would fail at its first write, after the warehouse was reached), and names the folder to free."""
    workspace.setup("--blocks-only")
    with small_disk(dbt_project / "target", "8m"):
        code, output = doctor(workspace, "--target", "dev")
    assert code == 1, output
    folder = dbt_project / "target" / "dev"
    assert f"[FAIL] disk space          8 MiB free on the disk of {folder}" in output
    assert "it needs about 50 MiB" in output
    assert f"fix: free space on that disk (the reports of old runs, in {folder / 'runs'}, can go)" in output
    assert "[ ok ] dbt parse" in output, "the other checks still run"


def test_the_space_a_run_needs_is_what_the_last_one_wrote(tmp_path: Path) -> None:
    """The artifacts at the folder's top (dbt writes them again at each run) and the newest run's report, not
    the older reports, nor anything before a first run."""
    folder = tmp_path / "target" / "dev"
    assert space_the_last_run_took(tmp_path, "dev") == 0
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_bytes(b"m" * 3000)
    (folder / "compiled").mkdir()
    (folder / "compiled" / "model.sql").write_bytes(b"c" * 500)  # rewritten only for what the run compiles
    assert space_the_last_run_took(tmp_path, "dev") == 3000
    old, new = folder / "runs" / "old-run", folder / "runs" / "new-run"
    for report, size in ((old, 7000), (new, 2000)):
        (report / "state").mkdir(parents=True)
        (report / "state" / "manifest.json").write_bytes(b"r" * size)
        (report / "report.md").write_bytes(b"r" * 100)
    os.utime(old, (1_000_000, 1_000_000))
    assert space_the_last_run_took(tmp_path, "dev") == 3000 + 2000 + 100
