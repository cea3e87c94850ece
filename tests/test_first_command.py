"""The README's first command, exactly as written, where new users meet it: a fresh clone, a fresh
PREFECT_HOME, PYTHONDONTWRITEBYTECODE=1 (as in many container images and CI runners) and half of one core
(tests/cpu_quota.py), as on a machine busy with other work. Nothing is exported for it: what makes it
robust must be in the repository.

It runs on the Python that runs the suite (uv is told which interpreter through UV_PYTHON), so the
suite run on Python 3.13 checks the first command on 3.13.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO
from tests.cpu_quota import half_a_core

pytestmark = pytest.mark.processes

# What the setup and a pipeline run may take on a busy 2-core machine, install of the project's
# virtual environment included (from uv's cache, byte-compiled). A bound, not a benchmark.
FIRST_COMMAND_TIMEOUT_SECONDS = 900
# Variables a developer's or CI's shell may hold that a new user's does not.
NOT_A_NEW_USERS = (
    "PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "UV_COMPILE_BYTECODE", "UV_PROJECT_ENVIRONMENT",
    "VIRTUAL_ENV", "PIPELINE_ENVIRONMENTS_FILE",
)  # fmt: skip


def readme_command(number: int) -> str:
    """The command under `# <number>.` in the README's quick start."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"^# {number}\..*\n(.+)$", readme, re.MULTILINE)
    assert found, f"the README's quick start has no command {number}"
    return found.group(1).strip()


def fresh_clone(destination: Path) -> Path:
    """The repository's files as a clone would have them (tracked and new, never ignored or built)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode)
    return destination


def new_users_environment(prefect_home: Path) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if name not in NOT_A_NEW_USERS}
    return {
        **environment,
        "PREFECT_HOME": str(prefect_home),
        "PYTHONDONTWRITEBYTECODE": "1",
        # The interpreter of this test run: uv would otherwise pick the first it finds.
        "UV_PYTHON": getattr(sys, "_base_executable", sys.executable),
    }


@pytest.fixture
def busy_core() -> Iterator[tuple[str, ...]]:
    """The prefix that runs the command on half of one core, as when its core is busy with other work."""
    with half_a_core(FIRST_COMMAND_TIMEOUT_SECONDS) as prefix:
        yield prefix


def test_first_command_on_a_fresh_clone_of_a_busy_machine(tmp_path: Path, busy_core: tuple[str, ...]) -> None:
    """Setup then a full run of the example project: exit 0, no time-out, no traceback, the warehouse built."""
    clone = fresh_clone(tmp_path / "clone")
    command = readme_command(1)
    assert command.startswith("pip install uv && uv run python -m infrastructure.setup_profiles")
    result = subprocess.run(
        [*busy_core, "bash", "-c", command], cwd=clone, env=new_users_environment(tmp_path / "prefect-home"),
        capture_output=True, text=True, timeout=FIRST_COMMAND_TIMEOUT_SECONDS,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Traceback" not in output
    assert "Timed out while attempting to connect" not in output
    assert "created       dbt-cli-profile-dev" in output
    assert re.search(r"Flow run '[\w-]+' - Finished in state Completed\(\)", output), output[-3000:]
    with duckdb.connect(str(clone / "data" / "dev.duckdb"), read_only=True) as warehouse:
        assert warehouse.execute("select count(*) from main.customers").fetchone() == (150,)


@pytest.mark.parametrize(
    "command",
    [("-m", "infrastructure.setup_profiles"), ("prefect_flows/pipeline.py",), ("-m", "infrastructure.doctor")],
    ids=["setup_profiles", "pipeline", "doctor"],
)
def test_temporary_server_that_cannot_start_is_one_clear_message(tmp_path: Path, command: tuple[str, ...]) -> None:
    """When Prefect's temporary server misses its start-up window, each command says so once, with the fix."""
    environment = new_users_environment(tmp_path / "prefect-home")
    environment["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "1"  # a window no server start fits in
    result = subprocess.run(
        [sys.executable, *command], cwd=REPO, env=environment, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Prefect's temporary server did not start" in output
    assert output.count("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") == 1, output
    assert "prefect server start" in output
    assert "Traceback" not in output


def test_a_command_started_from_another_directory_runs_with_the_repositorys_prefect_settings(tmp_path: Path) -> None:
    """Prefect reads pyproject.toml's `[tool.prefect]` from the current directory only: started from elsewhere (a
    cron job's home, `python ../prefect_flows/pipeline.py` from dbt/), a command used to run its temporary server
    with telemetry on, which on a machine offline logs an ERROR at each start (and with a 20 s start-up window).
    The doctor, from an empty directory on a fresh PREFECT_HOME: it runs its checks, and no ERROR is logged."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "infrastructure.doctor"], cwd=elsewhere,
        env=new_users_environment(tmp_path / "prefect-home"), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert "[ ok ] Prefect API         the temporary Prefect server" in output, output
    assert "| ERROR" not in output, output
    assert "Traceback" not in output, output


def test_a_prefect_home_the_temporary_server_cannot_write_is_one_clear_message(tmp_path: Path) -> None:
    """PREFECT_HOME where no database can be written (here a path under a file; in containers, an unwritable
    home directory): the command says so before starting the server, naming the file and the fix. Prefect
    would start the server again and again for its whole start-up window, a traceback each time."""
    environment = new_users_environment(tmp_path / "prefect-home")
    environment["PREFECT_HOME"] = str(REPO / "README.md" / "prefect")
    result = subprocess.run(
        [sys.executable, "prefect_flows/pipeline.py"], cwd=REPO, env=environment, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    database = REPO / "README.md" / "prefect" / "prefect.db"
    assert f"Prefect's temporary server cannot keep its database at {database}: its folder cannot be" in output
    assert "Set PREFECT_HOME to a folder this user can write" in output
    assert "Traceback" not in output
    assert "Starting temporary server" not in output, output


def test_a_temporary_server_that_exits_as_it_starts_is_given_up_after_three_starts(tmp_path: Path) -> None:
    """A database the server cannot open (here not a SQLite file at all; a database migrated by a newer Prefect
    fails alike): Prefect reads each exit as a port taken meanwhile and starts the server again on another, until
    its start-up window closes (3 minutes here, the same traceback each time). The command gives up after three
    starts, showing the first one's error and one line that says what to do."""
    prefect_home = tmp_path / "prefect-home"
    prefect_home.mkdir()
    (prefect_home / "prefect.db").write_bytes(b"not a database\n" * 1000)
    result = subprocess.run(
        [sys.executable, "prefect_flows/pipeline.py"], cwd=REPO, env=new_users_environment(prefect_home),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Prefect's temporary server exited as it started, 3 times in a row" in output, output[-3000:]
    assert f"PREFECT_HOME={prefect_home}" in output
    assert output.count("Application startup failed") == 1, "the first start's error, and only that one"
