"""DuckDB: a local file, the embedded default. No account, no network, no secret."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from dbt_pipeline.adapters.base import WarehouseEnvironment
from dbt_pipeline.errors import ConfigError
from dbt_pipeline.settings import resolve_path

if TYPE_CHECKING:
    from prefect_dbt.cli import TargetConfigs

    from dbt_pipeline.environments import Environments

IN_MEMORY = ":memory:"


class DuckDBEnvironment(WarehouseEnvironment):
    """A local DuckDB file: the embedded default, no account and no network needed."""

    adapter: Literal["duckdb"]
    path: Path = Field(
        description=f"The DuckDB database file (created on first run), or {IN_MEMORY!r}: a database that ends with "
        "each run."
    )
    schema_: str = Field(default="main", alias="schema", min_length=1)

    @field_validator("path")
    @classmethod
    def _resolve_database_path(cls, value: Path, info: ValidationInfo) -> Path | None:
        """A file is anchored at the environments file's folder; DuckDB's `:memory:` is not a file."""
        return value if str(value) == IN_MEMORY else resolve_path(value, info)

    @property
    def in_memory(self) -> bool:
        return str(self.path) == IN_MEMORY

    def built_data_ends_with_the_run(self) -> str | None:
        if not self.in_memory:
            return None
        return f"environments.{self.name}.path is {IN_MEMORY!r}, a DuckDB database in the run's memory"

    def target_configs(self, environments: Environments) -> TargetConfigs:
        from dbt_pipeline.profile_blocks import TargetConfigs

        return TargetConfigs(type="duckdb", schema=self.schema_, threads=self.threads, extras={"path": str(self.path)})

    def check_before_run(self, outputs: Mapping[str, Any], *, source: Path | None = None) -> None:
        """Refuse a DuckDB file whose folder cannot be created, naming the file, the key and the fix.

        The run creates the file's missing folders (`prepare_run`) and DuckDB the file, but only once
        a flow run has started: a path under a file (`../README.md/sub/x.duckdb`) or in a folder this
        user cannot write would fail there, with a raw OSError. The nearest existing folder tells
        beforehand, creating nothing.
        """
        database = _database(outputs)
        problem = None if database is None else _database_folder_problem(database)
        if problem is None:
            return
        key = f"environments.{self.name}.path"
        msg = (
            f"{source or 'The environments file'} is invalid:\n"
            f"  - {key}: cannot create the DuckDB file {database}: {problem}. Point {key} at a file in a folder "
            f"you can write (missing folders are created), then run the setup again: "
            f"uv run python -m infrastructure.setup_profiles --target {self.name}"
        )
        raise ConfigError(msg)

    def exclusive_resource(self) -> str | None:
        """The database file: DuckDB lets one process at a time open a file to write, whatever the schema. Named
        as the file system finds it, so that two spellings of one file (`..`, a symlink, `~`) are one file."""
        if self.in_memory:  # each process has a database of its own
            return None
        return f"DuckDB file {self.path.expanduser().resolve()}"

    def prepare_run(self, outputs: Mapping[str, Any]) -> None:
        """Create the folder of the DuckDB file: DuckDB creates the file on first use, not its folder."""
        database = _database(outputs)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)

    def finish_run(self) -> None:
        """Close the DuckDB database, which dbt-duckdb keeps open (and write-locked) for the whole process.

        dbt-duckdb shares one database handle across the commands of a process and drops it only at
        exit; a run freeing its target before then would leave the next run's first query to fail on
        the file's lock. Its `close_all_connections` forgets the handle without closing it.
        """
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager

        with DuckDBConnectionManager._LOCK:
            environment = DuckDBConnectionManager._ENV
            DuckDBConnectionManager.close_all_connections()  # type: ignore[no-untyped-call]
            if environment is not None:
                environment.close()

    def check_credentials(self, configs: Mapping[str, Any]) -> str:
        path = self.profile_outputs(configs)["path"]
        database = "DuckDB in-memory database" if path == IN_MEMORY else f"DuckDB file {path}"
        return f"{database} (no credentials needed)"

    def connection_check_skipped(self, outputs: Mapping[str, Any]) -> str | None:
        database = _database(outputs)
        if database is not None and not database.exists():
            return f"DuckDB file {database} does not exist yet: the first run creates it"
        return None


def _database(outputs: Mapping[str, Any]) -> Path | None:
    """The database file of a DuckDB profile, or None for an in-memory database."""
    path = outputs.get("path")
    if path is None or path == IN_MEMORY:
        return None
    return Path(path).expanduser()


def _database_folder_problem(database: Path) -> str | None:
    """Why the folders of `database` cannot be created, or None: its nearest existing ancestor decides."""
    try:
        if database.is_dir():
            return f"{database} is a folder"
        existing = next(parent for parent in database.parents if parent.exists())
    except OSError as error:  # a folder on the way that this user may not search (EACCES)
        return f"{error.filename} cannot be read ({error.strerror})"
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user"
    return None
