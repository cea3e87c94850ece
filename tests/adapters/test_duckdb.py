"""The DuckDB adapter: its block, its profile, the folder of its file, and what the doctor says of it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from dbt.cli.main import dbtRunner

from dbt_pipeline.adapters.duckdb import DuckDBEnvironment
from dbt_pipeline.environments import Environments
from dbt_pipeline.errors import ConfigError
from dbt_pipeline.profile_blocks import configs_data
from dbt_pipeline.profiles import profile_outputs

Load = Callable[[str], Environments]


def duckdb_file(load: Load, path: str) -> tuple[DuckDBEnvironment, Environments]:
    """The `dev` DuckDB environment on `path` (relative to the environments file), and its file."""
    environments = load(f"environments:\n  dev: {{adapter: duckdb, path: '{path}'}}\n")
    environment = environments.get("dev")
    assert isinstance(environment, DuckDBEnvironment)
    return environment, environments


def outputs_of(environment: DuckDBEnvironment, environments: Environments) -> dict[str, Any]:
    """The profile a run of `environment` uses: rendered from its block's data, as the setup and the flow do."""
    return profile_outputs(configs_data(environment.target_configs(environments)))


class RecordingPlanner:
    """Records what an adapter plans (the BlockPlanner protocol); a unit test's stand-in for the setup's plan."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.wanted: list[str] = []

    def want(self, name: str, desired: Any) -> Any:
        self.wanted.append(name)
        return desired


# --- setup: the block and the profile


def test_duckdb_outputs(load: Load) -> None:
    """A DuckDB environment renders type, path, schema and threads."""
    environments = load(
        "environments:\n  dev: {adapter: duckdb, path: /data/dev.duckdb, dbt_project_dir: /p, threads: 1}\n"
    )
    environment = environments.get("dev")
    assert isinstance(environment, DuckDBEnvironment)
    assert outputs_of(environment, environments) == {
        "type": "duckdb",
        "path": "/data/dev.duckdb",
        "schema": "main",
        "threads": 1,
    }


def test_schema_and_threads_of_the_file_reach_the_profile(load: Load, tmp_path: Path) -> None:
    """`schema` and `threads` are the environment's; a relative path is anchored at the environments file."""
    environments = load("environments:\n  dev: {adapter: duckdb, path: data/dev.duckdb, schema: staging, threads: 3}\n")
    environment = environments.get("dev")
    assert isinstance(environment, DuckDBEnvironment)
    assert outputs_of(environment, environments) == {
        "type": "duckdb",
        "path": str(tmp_path / "data" / "dev.duckdb"),
        "schema": "staging",
        "threads": 3,
    }


def test_only_the_profile_block_is_planned(load: Load) -> None:
    """DuckDB needs no block of its own: the setup creates the profile block alone, the configs are unchanged."""
    environment, environments = duckdb_file(load, "dev.duckdb")
    configs = environment.target_configs(environments)
    plan = RecordingPlanner()
    assert environment.block_names(environments) == ["dbt-cli-profile-dev"]
    assert environment.plan_blocks(configs, plan, environments) is configs
    assert (plan.wanted, plan.notes) == ([], [])


# --- setup: the folder of the DuckDB file, checked before any run


def test_duckdb_folder_that_can_be_created_passes(load: Load, tmp_path: Path) -> None:
    """Missing folders under a writable one are fine: the run creates them. The check creates nothing."""
    environment, environments = duckdb_file(load, "warehouse/nested/dev.duckdb")
    environment.check_before_run(outputs_of(environment, environments), source=tmp_path / "environments.yaml")
    assert not (tmp_path / "warehouse").exists()


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("notes.txt/sub/dev.duckdb", "{tmp}/notes.txt is a file, not a folder"),
        ("warehouse", "{tmp}/warehouse is a folder"),
    ],
    ids=["under-a-file", "a-folder"],
)
def test_duckdb_file_that_cannot_be_created_names_file_key_and_fix(
    load: Load, tmp_path: Path, path: str, problem: str
) -> None:
    """A DuckDB path under a file, or naming a folder, is refused with the environments file, the key and the fix."""
    (tmp_path / "notes.txt").write_text("a file\n")
    (tmp_path / "warehouse").mkdir()
    source = tmp_path / "environments.yaml"
    environment, environments = duckdb_file(load, path)
    with pytest.raises(ConfigError) as caught:
        environment.check_before_run(outputs_of(environment, environments), source=source)
    assert str(caught.value) == (
        f"{source} is invalid:\n  - environments.dev.path: cannot create the DuckDB file {tmp_path / path}: "
        f"{problem.format(tmp=tmp_path)}. Point environments.dev.path at a file in a folder you can write "
        "(missing folders are created), then run the setup again: "
        "uv run python -m infrastructure.setup_profiles --target dev"
    )


def test_duckdb_path_of_the_profile_block_is_the_one_checked(load: Load, tmp_path: Path) -> None:
    """The pipeline checks the path its run will use (the profile block's), naming the environment's key."""
    (tmp_path / "notes.txt").write_text("a file\n")
    environment, _ = duckdb_file(load, "dev.duckdb")
    source = tmp_path / "environments.yaml"
    with pytest.raises(ConfigError, match=r"environments\.dev\.path: cannot create the DuckDB file .*notes\.txt/x"):
        environment.check_before_run({"type": "duckdb", "path": str(tmp_path / "notes.txt" / "x")}, source=source)
    environment.check_before_run({"type": "duckdb", "path": ":memory:"}, source=source)


def test_refusal_without_a_source_still_says_which_file(load: Load, tmp_path: Path) -> None:
    """Called without the file's path, the message still starts with what is invalid."""
    (tmp_path / "notes.txt").write_text("a file\n")
    environment, _ = duckdb_file(load, "dev.duckdb")
    with pytest.raises(ConfigError, match=r"^The environments file is invalid:\n  - environments\.dev\.path: "):
        environment.check_before_run({"type": "duckdb", "path": str(tmp_path / "notes.txt" / "dev.duckdb")})


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any folder")
def test_duckdb_folder_that_is_not_writable_is_refused(load: Load, tmp_path: Path) -> None:
    """A read-only folder cannot receive the DuckDB file: refused before a run, with the key to change."""
    (tmp_path / "read-only").mkdir(mode=0o555)
    environment, environments = duckdb_file(load, "read-only/sub/dev.duckdb")
    with pytest.raises(ConfigError, match=r"read-only is not writable by this user"):
        environment.check_before_run(outputs_of(environment, environments), source=tmp_path / "environments.yaml")


# --- run


def test_prepare_run_creates_the_folder_of_the_file_not_the_file(load: Load, tmp_path: Path) -> None:
    """DuckDB creates its file but not the file's folders: a run creates them first, and only them."""
    environment, environments = duckdb_file(load, "warehouse/nested/dev.duckdb")
    environment.prepare_run(outputs_of(environment, environments))
    assert (tmp_path / "warehouse" / "nested").is_dir()
    assert not (tmp_path / "warehouse" / "nested" / "dev.duckdb").exists()
    environment.prepare_run(outputs_of(environment, environments))  # a second run: the folder exists, fine


def test_prepare_run_of_an_in_memory_database_creates_nothing(
    load: Load, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`:memory:` is not a file: no folder named after it appears where the run starts."""
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    environment, _ = duckdb_file(load, "dev.duckdb")
    environment.prepare_run({"type": "duckdb", "path": ":memory:"})
    assert list(workdir.iterdir()) == []


def test_an_in_memory_database_is_kept_as_dbt_duckdb_reads_it(load: Load, tmp_path: Path) -> None:
    """`:memory:` is not a path to anchor at the environments file's folder (it once became a file named
    `:memory:` there); its profile says `:memory:`, it shares no slot, and its data ends with the run."""
    environment, environments = duckdb_file(load, ":memory:")
    assert outputs_of(environment, environments)["path"] == ":memory:"
    assert environment.exclusive_resource() is None
    assert environment.built_data_ends_with_the_run() == (
        "environments.dev.path is ':memory:', a DuckDB database in the run's memory"
    )
    environment.check_before_run(outputs_of(environment, environments))
    assert not list(tmp_path.rglob("*memory*"))


def test_a_database_file_outlives_the_run(load: Load) -> None:
    environment, _ = duckdb_file(load, "dev.duckdb")
    assert environment.built_data_ends_with_the_run() is None


def test_a_duckdb_run_needs_no_secret(load: Load) -> None:
    """Nothing to export to dbt: the profile reads no variable."""
    environment, _ = duckdb_file(load, "dev.duckdb")
    assert environment.run_secrets() == {}


# --- doctor


def test_credentials_check_names_the_file(load: Load, tmp_path: Path) -> None:
    """The doctor's credentials line names the file the block points at: there is nothing else to check."""
    environment, environments = duckdb_file(load, "dev.duckdb")
    configs = configs_data(environment.target_configs(environments))
    assert environment.check_credentials(configs) == f"DuckDB file {tmp_path / 'dev.duckdb'} (no credentials needed)"


def test_doctor_does_not_create_the_file_by_connecting(load: Load, tmp_path: Path) -> None:
    """Connecting would create a missing file: the doctor skips it, saying why; an existing file is connected to."""
    environment, environments = duckdb_file(load, "dev.duckdb")
    outputs = outputs_of(environment, environments)
    database = tmp_path / "dev.duckdb"
    assert environment.connection_check_skipped(outputs) == (
        f"DuckDB file {database} does not exist yet: the first run creates it"
    )
    database.touch()
    assert environment.connection_check_skipped(outputs) is None


def test_credentials_check_of_an_in_memory_database(load: Load) -> None:
    environment, environments = duckdb_file(load, ":memory:")
    configs = configs_data(environment.target_configs(environments))
    assert environment.check_credentials(configs) == "DuckDB in-memory database (no credentials needed)"


def test_doctor_connects_to_an_in_memory_database(load: Load) -> None:
    """`:memory:` never exists as a file, and connecting to it changes nothing: not skipped."""
    environment, _ = duckdb_file(load, "dev.duckdb")
    assert environment.connection_check_skipped({"type": "duckdb", "path": ":memory:"}) is None


LOCK_PROBE = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"


def file_is_free(database: Path) -> bool:
    """Whether another process can open the DuckDB file for writing (DuckDB locks it per process)."""
    return subprocess.run([sys.executable, "-c", LOCK_PROBE, str(database)], capture_output=True).returncode == 0


def test_finish_run_releases_the_file_dbt_duckdb_keeps_locked(load: Load, tmp_path: Path) -> None:
    """After a dbt command the process still holds the file's lock (dbt-duckdb keeps its database open):
    a run freeing its target then would fail the next run's first query. finish_run releases it, and
    dbt opens it again when the process runs another command."""
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: tiny\nprofile: tiny\nversion: '1.0'\n")
    (project / "models" / "one.sql").write_text("select 1 as id\n")
    database = tmp_path / "warehouse.duckdb"
    (tmp_path / "profiles.yml").write_text(
        yaml.safe_dump({"tiny": {"target": "dev", "outputs": {"dev": {"type": "duckdb", "path": str(database)}}}})
    )
    environment = load(f"environments:\n  dev: {{adapter: duckdb, path: '{database}'}}\n").get("dev")
    args = ["run", "--project-dir", str(project), "--profiles-dir", str(tmp_path), "--log-level", "none"]

    assert dbtRunner().invoke(args).success
    assert not file_is_free(database), "dbt-duckdb no longer keeps the file open: finish_run may be unneeded"
    environment.finish_run()
    assert file_is_free(database)
    assert dbtRunner().invoke(args).success
    environment.finish_run()
