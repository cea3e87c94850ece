"""PostgreSQL, the third adapter, end to end against a real server started by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg2  # type: ignore[import-untyped]  # no stubs among our pinned dev dependencies
import yaml
from prefect.blocks.system import Secret
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.conftest import Workspace
from tests.postgres_server import PostgresServer
from tests.prefect_api import flow_run_name


def postgres_environment(workspace: Workspace, project: Path, server: PostgresServer, **settings: object) -> None:
    environment = {
        "adapter": "postgres", "host": server.host, "port": server.port, "user": server.user,
        "database": server.database, "schema": "analytics", "threads": 4, **settings,
    }  # fmt: skip
    workspace.write_environments({"defaults": {"dbt_project_dir": str(project)}, "environments": {"pg": environment}})


def count(server: PostgresServer, table: str) -> int:
    with (
        psycopg2.connect(
            host=server.host, port=server.port, user=server.user, password=server.password, dbname=server.database
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(f"select count(*) from analytics.{table}")
        return int(cursor.fetchone()[0])


def test_example_project_runs_on_postgres_with_a_secret_block(
    workspace: Workspace, dbt_project: Path, prefect_api: str, postgres_server: PostgresServer
) -> None:
    """The password comes from a Prefect Secret block; the whole pipeline builds the project on PostgreSQL."""
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        Secret(value=postgres_server.password).save("pg-password", overwrite=True)
    postgres_environment(workspace, dbt_project, postgres_server, password_secret_block="pg-password")
    workspace.setup()
    profiles = (dbt_project / "profiles.yml").read_text()
    password = yaml.safe_load(profiles)["shop_analytics"]["outputs"]["pg"]["password"]
    assert password == "{{ env_var('DBT_ENV_SECRET_POSTGRES_PASSWORD') }}"
    assert postgres_server.password not in profiles

    result = workspace.pipeline("--target", "pg")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert postgres_server.password not in output
    assert (count(postgres_server, "customers"), count(postgres_server, "orders")) == (150, 800)
    assert count(postgres_server, "products_snapshot") == 60
    # The whole example is portable: its data tests and its unit tests pass on PostgreSQL too.
    nodes = json.loads((dbt_project / "target" / "pg" / "runs" / flow_run_name(output) / "nodes.json").read_text())
    tests = [row for row in nodes if row["type"] in ("test", "unit_test")]
    assert len([row for row in tests if row["type"] == "unit_test"]) == 4
    assert {row["status"] for row in tests} == {"pass"}, [row for row in tests if row["status"] != "pass"]


def test_password_from_the_environment_or_a_clear_error(
    workspace: Workspace, dbt_project: Path, postgres_server: PostgresServer
) -> None:
    """Without a Secret block the password comes from $DBT_ENV_SECRET_POSTGRES_PASSWORD; else a clear error."""
    postgres_environment(workspace, dbt_project, postgres_server)
    workspace.setup("--blocks-only")
    workspace.env.pop("DBT_ENV_SECRET_POSTGRES_PASSWORD", None)
    missing = workspace.pipeline("--target", "pg", "--select", "raw_stores")
    assert missing.returncode == 1
    assert "No PostgreSQL password for target 'pg': set $DBT_ENV_SECRET_POSTGRES_PASSWORD" in missing.stderr
    assert "Traceback" not in missing.stderr

    workspace.env["DBT_ENV_SECRET_POSTGRES_PASSWORD"] = postgres_server.password
    result = workspace.pipeline("--target", "pg", "--select", "raw_stores")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert count(postgres_server, "raw_stores") == 5
