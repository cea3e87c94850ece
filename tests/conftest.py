"""Shared fixtures: a real Prefect server, an isolated copy of the example dbt project, and a way
to run the repository's commands exactly as a user types them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbt_pipeline.target_slot import SlotTimings
from tests.commands import COMMAND_LINES, run_in_process
from tests.postgres_server import PostgresServer, running_postgres
from tests.prefect_server import PREFECT, PrefectServer, migrated_database

# The BigQuery emulator fixture (a test double: Google's endpoints cannot be reached here).
pytest_plugins = ("tests.emulators",)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PROJECT = REPO / "dbt"
TESTS = REPO / "tests"


# The test files that take a worker over a minute each (--durations in CI), longest first. Each worker takes a
# whole file at a time (--dist loadfile); started first, they end before the short files, which fill the gaps
# (with xdist's default order, by number of tests, a long file could start last and run alone at the end).
LONGEST_FIRST = (
    "test_server_faults.py", "test_first_command.py", "test_interrupts.py", "test_bigquery.py", "test_target_slot.py",
    "test_crashes.py", "test_deployments.py", "test_screenshots.py", "test_retries.py", "test_alerts.py",
    "test_changed_only.py", "test_retry_failed.py", "test_pipeline.py", "test_packages.py",
    "test_bigquery_interrupts.py",
)  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    """Give the commands under test SIGINT as a terminal's foreground job has it. A suite started as a background
    job (`uv run pytest &` in a script, nohup) inherits SIGINT ignored, and passes that on to every command it
    starts: the tests that press Ctrl-C would find it ignored, as the shell intends for background jobs.
    (Seen: README command 2 started in the background, 7 failures, all of them Ctrl-C tests.)"""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest test files first (LONGEST_FIRST, paths under tests/), the others in their usual order."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.relative_to(TESTS).as_posix(), len(rank)))


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PREFECT_HOME of the test session's own: no test touches the user's Prefect."""
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture(scope="session")
def prefect_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty Prefect database, migrated once for the whole test session (all its xdist workers), which the
    tests' Prefect servers start from (tests/prefect_server.py)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, which holds each worker's
    return migrated_database(root / "prefect-database")


@pytest.fixture(scope="session")
def prefect_api(prefect_home: Path, prefect_database: Path) -> Iterator[str]:
    """A real `prefect server start` on loopback, stopped at the end of the session."""
    server = PrefectServer(prefect_home, database=prefect_database)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on loopback for the session (password authentication)."""
    with running_postgres() as server:
        yield server


def copy_example_project(destination: Path) -> Path:
    """A private copy of the example dbt project at `destination`, without build outputs or a local profile."""
    shutil.copytree(
        EXAMPLE_PROJECT, destination, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "profiles.yml")
    )
    return destination


# The part of the example project that the tests of what happens around a run (signals, crashes, the
# target's slot, retries) build, marked `example_slice`: two sources, their seeds, their staging models and
# those models' tests, and a mart of its own over the stores (the example's marts need most of its nodes).
# 21 nodes instead of the example's 261: a run of it costs what its orchestration costs, not the example's
# parse (a run of one seed: 11 CPU-s against 21 on a fresh copy).
SLICE_TABLES = ("customers", "stores")
SLICE_MART = "stores_per_channel"
STAGING = Path("models") / "staging"


def copy_example_slice(destination: Path) -> Path:
    """A private copy of the example project at `destination`, with only the nodes of SLICE_TABLES and the mart
    SLICE_MART: the example's configuration, macros and generic tests, and the YAML entries of those nodes."""
    seeds = [f"raw_{table}" for table in SLICE_TABLES]
    models = [f"stg_shop__{table}" for table in SLICE_TABLES]
    shutil.copytree(EXAMPLE_PROJECT / "macros", destination / "macros")
    shutil.copytree(EXAMPLE_PROJECT / "tests" / "generic", destination / "tests" / "generic")
    for folder in (destination / "seeds", destination / STAGING, destination / "models" / "marts"):
        folder.mkdir(parents=True)
    for name in [f"seeds/{seed}.csv" for seed in seeds] + [f"{STAGING}/{model}.sql" for model in models]:
        shutil.copyfile(EXAMPLE_PROJECT / name, destination / name)
    (destination / "models" / "marts" / f"{SLICE_MART}.sql").write_text(
        "select sales_channel, count(*) as stores from {{ ref('stg_shop__stores') }} group by sales_channel\n"
    )
    _copy_yaml(Path("seeds") / "_seeds.yml", destination, lambda document: _keep(document["seeds"], seeds))
    _copy_yaml(STAGING / "_shop__models.yml", destination, lambda document: _keep(document["models"], models))
    _copy_yaml(
        STAGING / "_shop__sources.yml",
        destination,
        lambda document: _keep(document["sources"][0]["tables"], SLICE_TABLES),
    )
    # Only the layers it has: dbt warns of configuration for folders without a model.
    _copy_yaml(
        Path("dbt_project.yml"),
        destination,
        lambda document: _keep_keys(document["models"]["shop_analytics"], ["staging", "marts"]),
    )
    return destination


def _copy_yaml(relative: Path, destination: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    document = yaml.safe_load((EXAMPLE_PROJECT / relative).read_text(encoding="utf-8"))
    edit(document)
    (destination / relative).write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def _keep(entries: list[dict[str, Any]], names: Sequence[str]) -> None:
    entries[:] = [entry for entry in entries if entry["name"] in names]


def _keep_keys(mapping: dict[str, Any], keys: Sequence[str]) -> None:
    for key in set(mapping) - set(keys):
        del mapping[key]


@pytest.fixture
def dbt_project(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A private copy of the example dbt project (without build outputs or a local profile), or of its slice
    (`copy_example_slice`) for the tests marked `example_slice`."""
    if request.node.get_closest_marker("example_slice"):
        return copy_example_slice(tmp_path / "dbt")
    return copy_example_project(tmp_path / "dbt")


@dataclass
class Workspace:
    """An environments file and the environment variables to run the repository's commands with."""

    environments_file: Path
    env: dict[str, str]
    root: Path

    def write_environments(self, document: dict[str, object]) -> None:
        self.environments_file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run `python <args>` from the repository root, as the README shows."""
        return subprocess.run(
            [sys.executable, *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def setup(self, *args: str, process: bool = False) -> subprocess.CompletedProcess[str]:
        """The setup command with `args`, which must succeed: in this process (tests/commands.py), or as a user
        starts it with `process`, or when the workspace has no PREFECT_API_URL (the command's temporary server)."""
        result = self.command("setup", args, process=process)
        assert result.returncode == 0, result.stderr + result.stdout
        return result

    def pipeline(self, *args: str, process: bool = False) -> subprocess.CompletedProcess[str]:
        """The pipeline with `args`: in this process (tests/commands.py), or as a user starts it with `process`."""
        return self.command("pipeline", args, process=process)

    def doctor(self, *args: str, process: bool = False) -> subprocess.CompletedProcess[str]:
        """The doctor with `args`: in this process (tests/commands.py), or as a user starts it with `process`."""
        return self.command("doctor", args, process=process)

    def command(self, command: str, args: Sequence[str], *, process: bool) -> subprocess.CompletedProcess[str]:
        """`command` (setup, pipeline, doctor) with `args`: in this process (tests/commands.py), or as a process
        when asked or when the workspace has no PREFECT_API_URL (the command's temporary server)."""
        if process or "PREFECT_API_URL" not in self.env:
            return self.run(*COMMAND_LINES[command], *args)
        return run_in_process(command, args, self.env)

    def prefect(self, *args: str, timeout: float = 360) -> subprocess.CompletedProcess[str]:
        """Run `prefect <args>` from the repository root, as a user types it."""
        return subprocess.run(
            [str(PREFECT), *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )


def make_workspace(root: Path, prefect_api: str, prefect_home: Path, **env: str) -> Workspace:
    """A workspace under `root`: its environments file (not written yet), a private TMPDIR, the session's server.

    For the module-scoped fixtures that need what the function-scoped `workspace` fixture gives.
    """
    (root / "tmp").mkdir()
    environment = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PIPELINE_ENVIRONMENTS_FILE": str(root / "environments.yaml"),
        "TMPDIR": str(root / "tmp"),
        **env,
    }
    return Workspace(root / "environments.yaml", environment, root)


def duckdb_environments(project: Path, database: Path, *names: str) -> dict[str, object]:
    """An environments document with one DuckDB environment per name, all on `database`, each keeping its last
    good state in the folder `state/` beside it (never shared with another test)."""
    state = str(database.parent / "state")
    return {
        "defaults": {"dbt_project_dir": str(project)},
        "environments": {
            name: {"adapter": "duckdb", "path": str(database), "threads": 1, "state_store": state} for name in names
        },
    }


def busy_duckdb_model(rows: int) -> str:
    """A DuckDB table model whose query keeps one core busy for `rows` rows, so that a run can be interrupted
    mid-query. On one DuckDB thread: the run's own threads (its heartbeat, its
    signal handling) and the rest of the suite keep the other core."""
    config = "{{ config(materialized='table', pre_hook='set threads = 1') }}"
    return f"{config}\nselect sum(hash(i)) as h from range({rows}) t(i)\n"


def sleeping_duckdb_model(seconds: int = 600, *, gate: Path | None = None, after: str | None = None) -> str:
    """A DuckDB table model whose query sleeps for `seconds` (DuckDB's `sleep_ms`), so that a run can be stopped
    mid-query: dbt's cancel interrupts it as it interrupts any DuckDB query. For the tests that then wait (for a
    time limit, a lost API, a cancellation, a kill), where a busy query would burn a core all along. With
    `gate`, it sleeps only if that file does not exist as the query starts: opening the gate spares the next
    run the sleep, it does not end a sleep under way (test_server_faults' Python model does that). `after`
    names a model it is built after."""
    milliseconds = str(seconds * 1000)
    if gate is not None:
        milliseconds = f"case when (select count(*) from glob('{gate}')) = 0 then {milliseconds} else 0 end"
    depends_on = f"-- depends_on: {{{{ ref('{after}') }}}}\n" if after else ""
    return f"{{{{ config(materialized='table') }}}}\n{depends_on}select sleep_ms({milliseconds}) as slept\n"


# The shortest take-over of a silent run the environments file allows: the tests that wait for one set it,
# and the guarantees hold at any value (SlotTimings keeps the proportions).
SHORT_TAKEOVER = SlotTimings(takeover_after=20)


def with_short_takeover(document: dict[str, Any]) -> dict[str, Any]:
    """The environments document with every environment's `takeover_after_seconds` set to SHORT_TAKEOVER's."""
    for environment in document["environments"].values():
        environment["takeover_after_seconds"] = int(SHORT_TAKEOVER.takeover_after)
    return document


@pytest.fixture
def workspace(tmp_path: Path, prefect_api: str, prefect_home: Path, dbt_project: Path) -> Workspace:
    """A DuckDB `dev` environment on a private copy of the example project, against the test server."""
    workspace = make_workspace(tmp_path, prefect_api, prefect_home)
    workspace.write_environments(duckdb_environments(dbt_project, tmp_path / "warehouse" / "dev.duckdb", "dev"))
    return workspace
