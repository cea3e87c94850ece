"""Secrets a run's profile reads through dbt's env_var(), resolved at run time, never stored.

A PostgreSQL profile holds `{{ env_var('DBT_ENV_SECRET_...') }}`, not the password: the value comes
from the worker's environment or, when the environments file names one, a Prefect Secret block. It
is exported to the dbt run only, and dbt scrubs DBT_ENV_SECRET_* values from its logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from prefect.blocks.system import Secret

from dbt_pipeline.blocks import load_block
from dbt_pipeline.environments import AnyEnvironment, PostgresEnvironment
from dbt_pipeline.errors import ConfigError


def run_secrets(environment: AnyEnvironment) -> dict[str, str]:
    """The variables the environment's profile needs that the process does not have yet."""
    if not isinstance(environment, PostgresEnvironment):
        return {}
    variable = environment.password_env_var
    if environment.password_secret_block:
        secret = load_block(Secret, environment.password_secret_block, target=environment.name)
        return {variable: str(secret.get())}
    if variable not in os.environ:
        msg = (
            f"No PostgreSQL password for target {environment.name!r}: set ${variable} where the flow runs, "
            f"or name a Prefect Secret block in environments.{environment.name}.password_secret_block."
        )
        raise ConfigError(msg)
    return {}


@contextmanager
def exported(variables: Mapping[str, str]) -> Iterator[None]:
    """Export `variables` for the duration of the block, then restore the environment as it was."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
