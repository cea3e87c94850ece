"""The PostgreSQL adapter: a password referenced, never stored; read at run time, or a clear error.

The password from a Prefect Secret block (`password_secret_block`) needs a Prefect API: that path is
exercised end to end against a real server by tests/test_postgres.py and tests/test_secrets.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from dbt_pipeline.adapters.postgres import PostgresEnvironment
from dbt_pipeline.environments import Environments
from dbt_pipeline.errors import ConfigError
from dbt_pipeline.profile_blocks import configs_data
from dbt_pipeline.profiles import profile_outputs

Load = Callable[[str], Environments]

PASSWORD = "correct-horse-battery-staple"  # a test's value, checked to appear nowhere
VARIABLE = "DBT_ENV_SECRET_PG_PROD"
REFERENCE = "{{ env_var('DBT_ENV_SECRET_PG_PROD') }}"


@pytest.fixture(autouse=True)
def _no_password_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test decides which password variables exist, whatever the machine running them exports."""
    monkeypatch.delenv(VARIABLE, raising=False)
    monkeypatch.delenv("DBT_ENV_SECRET_POSTGRES_PASSWORD", raising=False)


def postgres(load: Load, **settings: object) -> tuple[PostgresEnvironment, Environments]:
    stanza = {
        "adapter": "postgres", "host": "db.internal", "port": 6543, "user": "dbt", "database": "analytics",
        "password_env_var": VARIABLE, **settings,
    }  # fmt: skip
    environments = load(json.dumps({"environments": {"pg": stanza}}))  # JSON is YAML
    environment = environments.get("pg")
    assert isinstance(environment, PostgresEnvironment)
    return environment, environments


# --- setup: the block holds a reference to the password


def test_block_references_the_password_variable_never_the_password(load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even with the password in the setup's environment, the block holds dbt's env_var() reference only."""
    monkeypatch.setenv(VARIABLE, PASSWORD)
    environment, environments = postgres(load)
    data = configs_data(environment.target_configs(environments))
    assert data["extras"]["password"] == REFERENCE
    assert PASSWORD not in json.dumps(data)


def test_profile_renders_the_connection_and_the_password_reference(load: Load) -> None:
    """profiles.yml gets host, port, user, dbname, schema, threads and the reference dbt resolves at run time."""
    environment, environments = postgres(load, schema="marts", threads=4)
    outputs = profile_outputs(configs_data(environment.target_configs(environments)))
    assert outputs == {
        "type": "postgres",
        "schema": "marts",
        "threads": 4,
        "host": "db.internal",
        "port": 6543,
        "user": "dbt",
        "dbname": "analytics",
        "password": REFERENCE,
    }


def test_defaults_are_a_local_server_public_schema_and_the_documented_variable(load: Load) -> None:
    """Left out, host is localhost, port 5432, schema public, and the password variable the README names."""
    environments = load("environments:\n  pg: {adapter: postgres, user: dbt, database: analytics}\n")
    environment = environments.get("pg")
    outputs = profile_outputs(configs_data(environment.target_configs(environments)))
    assert {key: outputs[key] for key in ("host", "port", "schema", "password")} == {
        "host": "localhost",
        "port": 5432,
        "schema": "public",
        "password": "{{ env_var('DBT_ENV_SECRET_POSTGRES_PASSWORD') }}",
    }


def test_only_the_profile_block_is_planned(load: Load) -> None:
    """PostgreSQL has no block of its own (the optional Secret block is the user's): the profile block only."""
    environment, environments = postgres(load)
    assert environment.block_names(environments) == ["dbt-cli-profile-pg"]


# --- run: the password


def test_no_password_anywhere_names_the_variable_and_the_block_key(load: Load) -> None:
    """Neither the variable nor a Secret block: refused before dbt starts, with both ways to give the password."""
    environment, _ = postgres(load)
    with pytest.raises(ConfigError) as caught:
        environment.run_secrets()
    assert str(caught.value) == (
        f"No PostgreSQL password for target 'pg': set ${VARIABLE} where the flow runs, "
        "or name a Prefect Secret block in environments.pg.password_secret_block."
    )


def test_password_in_the_environment_is_left_to_dbt(load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the variable set, there is nothing to export: dbt reads it itself, and the run never holds a copy."""
    monkeypatch.setenv(VARIABLE, PASSWORD)
    environment, _ = postgres(load)
    assert environment.run_secrets() == {}


def test_only_the_configured_variable_counts(load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default variable set does not satisfy an environment that names another one."""
    monkeypatch.setenv("DBT_ENV_SECRET_POSTGRES_PASSWORD", PASSWORD)
    environment, _ = postgres(load)
    with pytest.raises(ConfigError, match=rf"set \${VARIABLE} where"):
        environment.run_secrets()


# --- doctor


def test_credentials_check_describes_the_connection_and_the_passwords_source(
    load: Load, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The doctor says who connects where, and where the password comes from, without showing it."""
    monkeypatch.setenv(VARIABLE, PASSWORD)
    environment, environments = postgres(load)
    described = environment.check_credentials(configs_data(environment.target_configs(environments)))
    assert described == f"dbt@db.internal:6543/analytics, password from ${VARIABLE}"


def test_credentials_check_without_a_password_gives_the_fix(load: Load) -> None:
    """No password: the doctor fails its credentials check with the same message a run would give."""
    environment, environments = postgres(load)
    with pytest.raises(ConfigError, match=r"No PostgreSQL password for target 'pg': set \$DBT_ENV_SECRET_PG_PROD"):
        environment.check_credentials(configs_data(environment.target_configs(environments)))


# --- settings


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"password_env_var": "PGPASSWORD"},
            "environments.pg.password_env_var: 'PGPASSWORD' is not allowed: "
            "a variable name starting with DBT_ENV_SECRET_ (dbt scrubs those from its logs).",
        ),
        (
            {"password_env_var": "DBT_ENV_SECRET_"},
            "environments.pg.password_env_var: 'DBT_ENV_SECRET_' is not allowed: a variable name starting with",
        ),
        ({"port": 70000}, "environments.pg.port: Input should be less than or equal to 65535 (got 70000)."),
        ({"user": None}, "environments.pg.user: Input should be a valid string (got None)."),
        ({"password": "hunter2"}, "environments.pg.password: unknown key"),
    ],
    ids=["variable-dbt-would-log", "variable-prefix-only", "port-out-of-range", "user-null", "password-in-file"],
)
def test_settings_are_checked_when_the_file_is_read(load: Load, settings: dict[str, object], expected: str) -> None:
    """A password variable dbt would not scrub, a bad port, a password written in the file: refused, key named."""
    with pytest.raises(ConfigError) as caught:
        postgres(load, **settings)
    assert expected in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_user_and_database_are_required(load: Load) -> None:
    """Without them there is nothing to connect to: both missing keys are named."""
    with pytest.raises(ConfigError) as caught:
        load("environments:\n  pg: {adapter: postgres}\n")
    assert "environments.pg.user: required, but missing; add it." in str(caught.value)
    assert "environments.pg.database: required, but missing; add it." in str(caught.value)
