"""PostgreSQL: a server the team hosts. Its password is read at run time, never stored in a block or a file.

The profile holds `{{ env_var('DBT_ENV_SECRET_...') }}`, not the password: the value comes from the
worker's environment or, when the environments file names one, a Prefect Secret block. It is exported
to the dbt run only, and dbt scrubs DBT_ENV_SECRET_* values from its logs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from dbt_pipeline.adapters.base import WarehouseEnvironment
from dbt_pipeline.errors import ConfigError
from dbt_pipeline.settings import SECRET_VARIABLE_PATTERN

if TYPE_CHECKING:
    from prefect_dbt.cli import TargetConfigs

    from dbt_pipeline.environments import Environments


class PostgresEnvironment(WarehouseEnvironment):
    """A PostgreSQL database: for teams that self-host their warehouse."""

    adapter: Literal["postgres"]
    host: str = Field(default="localhost", min_length=1)
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    user: str = Field(min_length=1)
    database: str = Field(min_length=1)
    schema_: str = Field(default="public", alias="schema", min_length=1)
    password_env_var: str = Field(
        default="DBT_ENV_SECRET_POSTGRES_PASSWORD",
        pattern=SECRET_VARIABLE_PATTERN,
        description="Variable holding the password; dbt scrubs DBT_ENV_SECRET_* values from its logs.",
    )
    password_secret_block: str | None = Field(
        default=None, description="A Prefect Secret block holding the password, read at run time."
    )

    def target_configs(self, environments: Environments) -> TargetConfigs:
        from dbt_pipeline.profile_blocks import TargetConfigs

        return TargetConfigs(
            type="postgres",
            schema=self.schema_,
            threads=self.threads,
            # The block holds a reference to the password, never the password: dbt reads the
            # variable when it renders the profile.
            extras={
                "host": self.host,
                "port": self.port,
                "user": self.user,
                "dbname": self.database,
                "password": f"{{{{ env_var('{self.password_env_var}') }}}}",
            },
        )

    def run_secrets(self) -> dict[str, str]:
        variable = self.password_env_var
        if self.password_secret_block:
            from prefect.blocks.system import Secret

            from dbt_pipeline.blocks import load_block

            secret = load_block(Secret, self.password_secret_block, target=self.name)
            return {variable: str(secret.get())}
        if variable not in os.environ:
            msg = (
                f"No PostgreSQL password for target {self.name!r}: set ${variable} where the flow runs, "
                f"or name a Prefect Secret block in environments.{self.name}.password_secret_block."
            )
            raise ConfigError(msg)
        return {}

    def check_credentials(self, configs: Mapping[str, Any]) -> str:
        self.run_secrets()  # raises, with the fix, when there is no password
        source = (
            f"Secret block {self.password_secret_block!r}"
            if self.password_secret_block
            else f"${self.password_env_var}"
        )
        return f"{self.user}@{self.host}:{self.port}/{self.database}, password from {source}"
