"""`python -m infrastructure.setup_profiles` against a real Prefect server: blocks, profiles.yml, idempotence."""

from __future__ import annotations

import errno
import json
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_gcp import GcpCredentials

from dbt_pipeline.environments import target_concurrency_limit
from dbt_pipeline.profile_blocks import BigQueryTargetConfigs, DbtCliProfile, load_dbt_cli_profile
from infrastructure.setup_profiles.blocks import Action
from infrastructure.setup_profiles.concurrency_limits import apply_limits, plan_limits
from tests.commands import COMMAND_LINES
from tests.conftest import REPO, Workspace, copy_example_project, duckdb_environments
from tests.flaky_api import FlakyApi
from tests.prefect_api import prefect_client
from tests.prefect_server import PrefectServer
from tests.test_doctor import small_disk


@pytest.fixture
def api(prefect_api: str) -> Iterator[None]:
    """Point this process's Prefect client at the test server, to inspect the blocks."""
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        yield


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, str]:
    """A service-account key file with a generated RSA key; returns its path and a marker from the key."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key: dict[str, Any] = {
        "type": "service_account", "project_id": "acme-data-123", "private_key_id": "k1", "private_key": pem,
        "client_email": "dbt@acme-data-123.iam.gserviceaccount.com", "client_id": "1", "token_uri": "http://127.0.0.1:9/t",
    }  # fmt: skip
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key))
    return path, pem.splitlines()[5]


def test_first_run_creates_dev_block_and_profiles_then_changes_nothing(
    workspace: Workspace, dbt_project: Path, api: None
) -> None:
    """Setup creates dbt-cli-profile-dev and dbt/profiles.yml; a second run changes nothing and says so.

    Both as a user starts the command (a process), where the other tests of the setup call it in-process."""
    first = workspace.setup(process=True)
    assert "created       dbt-cli-profile-dev" in first.stdout or "updated       dbt-cli-profile-dev" in first.stdout
    assert "created       targets: dev" in first.stdout

    block = DbtCliProfile.load("dbt-cli-profile-dev")
    assert block.name == "shop_analytics"
    assert block.target == "dev"
    assert block.target_configs.get_configs()["path"] == str(workspace.root / "warehouse" / "dev.duckdb")

    profiles = dbt_project / "profiles.yml"
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o600
    document = yaml.safe_load(profiles.read_text())
    assert document["shop_analytics"]["outputs"]["dev"]["type"] == "duckdb"
    before = profiles.stat().st_mtime_ns

    second = workspace.setup(process=True)
    assert "unchanged     dbt-cli-profile-dev" in second.stdout
    assert "Nothing to change" in second.stdout
    assert profiles.stat().st_mtime_ns == before


def test_dry_run_writes_nothing(workspace: Workspace, dbt_project: Path, api: None) -> None:
    """--dry-run reports what it would do and creates neither block nor file."""
    workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "environments": {"dryrun": {"adapter": "duckdb", "path": "x.db"}},
        }
    )
    result = workspace.setup("--dry-run")
    assert "would create  dbt-cli-profile-dryrun" in result.stdout
    assert "would create  dbt-target-dryrun (global concurrency limit" in result.stdout
    assert "Dry run: 3 change(s) planned, nothing written." in result.stdout
    assert not (dbt_project / "profiles.yml").exists()
    with pytest.raises(ValueError, match="Unable to find block document"):
        DbtCliProfile.load("dbt-cli-profile-dryrun")


def test_bigquery_environment_without_project_is_skipped_with_reason(workspace: Workspace, dbt_project: Path) -> None:
    """With no GCP project, the BigQuery blocks are skipped and the output says what to set."""
    workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "environments": {"prod": {"adapter": "bigquery", "dataset": "analytics"}},
        }
    )
    workspace.env.pop("GOOGLE_CLOUD_PROJECT", None)
    result = workspace.setup("--blocks-only")
    for name in ("gcp-credentials", "bigquery-target-configs-prod", "dbt-cli-profile-prod"):
        assert f"skipped       {name}: no GCP project" in result.stdout
    assert "set gcp.project" in result.stdout

    # Asked for by name, the target is not one line among others: the setup fails with the one fix.
    named = workspace.run("-m", "infrastructure.setup_profiles", "--blocks-only", "--target", "prod")
    assert named.returncode == 1
    assert named.stderr.count("set gcp.project") == 1, named.stderr
    assert "cannot set up target 'prod': no GCP project" in named.stderr
    assert "Nothing to change" not in named.stdout + named.stderr
    assert "Traceback" not in named.stderr


def test_bigquery_blocks_reference_credentials_and_never_show_the_key(
    workspace: Workspace, dbt_project: Path, key_file: tuple[Path, str], api: None
) -> None:
    """With a project and a key, the three BigQuery blocks are created and linked; the key is nowhere but the block."""
    path, marker = key_file
    workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "gcp": {"credentials_block": "gcp-credentials-test"},
            "environments": {
                "bqprod": {
                    "adapter": "bigquery",
                    "dataset": "analytics_prod",
                    "location": "EU",
                    "threads": 4,
                    "maximum_bytes_billed": 10**9,
                }
            },
        }
    )
    workspace.env.update(GOOGLE_CLOUD_PROJECT="acme-data-123", GOOGLE_APPLICATION_CREDENTIALS=str(path))
    result = workspace.setup()
    for name in ("gcp-credentials-test", "bigquery-target-configs-bqprod", "dbt-cli-profile-bqprod"):
        assert f"created       {name}" in result.stdout
    assert marker not in result.stdout + result.stderr

    profile = load_dbt_cli_profile("dbt-cli-profile-bqprod")
    configs = profile.target_configs
    assert isinstance(configs, BigQueryTargetConfigs)
    assert (configs.project, configs.schema_, configs.threads) == ("acme-data-123", "analytics_prod", 4)
    assert configs.extras == {
        "location": "EU",
        "job_execution_timeout_seconds": 300,
        "job_retries": 1,
        "priority": "interactive",
        "maximum_bytes_billed": 10**9,
    }
    credentials = GcpCredentials.load("gcp-credentials-test")
    assert credentials.service_account_info is not None
    assert marker in credentials.service_account_info.get_secret_value()["private_key"]

    local = (dbt_project / "profiles.yml").read_text()
    assert marker not in local
    assert yaml.safe_load(local)["shop_analytics"]["outputs"]["bqprod"]["keyfile"] == str(path)

    again = workspace.setup()
    assert "Nothing to change" in again.stdout, again.stdout


@pytest.mark.processes
def test_setups_started_together_on_a_new_server_all_succeed(
    workspace: Workspace, tmp_path: Path, prefect_database: Path
) -> None:
    """Several setups at once against one Prefect API that has never held our blocks (CI jobs of a matrix,
    workers that run the setup as they start): each read "not there" then created, and all but one failed on
    Prefect's 409 with a traceback, on a block type or on the target's concurrency limit. Each must succeed,
    leaving one of each. Whether the creates collide depends on timing: old code failed 3 setups of 4 here."""
    server = PrefectServer(tmp_path / "new-server", database=prefect_database)
    workspace.env["PREFECT_API_URL"] = server.start()
    try:
        command = [sys.executable, *COMMAND_LINES["setup"], "--blocks-only"]
        setups = [
            subprocess.Popen(
                command, cwd=REPO, env=workspace.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for _ in range(4)
        ]
        outputs = [setup.communicate(timeout=300)[0] for setup in setups]
        for setup, output in zip(setups, outputs, strict=True):
            assert setup.returncode == 0, output[-4000:]
            assert "Traceback" not in output
        with prefect_client(server.api) as client:
            limit = client.read_global_concurrency_limit_by_name("dbt-target-dev")
            assert (limit.limit, limit.active) == (1, True)
        with temporary_settings({PREFECT_API_URL: server.api}):
            assert load_dbt_cli_profile("dbt-cli-profile-dev").target == "dev"
    finally:
        server.stop()


def test_a_limit_created_meanwhile_by_another_setup_is_set_as_planned(api: None) -> None:
    """The race above, made certain: the limit appears between the plan and its create."""
    name = target_concurrency_limit(target := f"race-{uuid.uuid4().hex[:8]}")
    planned = plan_limits([target])
    assert [change.action for change in planned] == [Action.CREATE]
    with get_client(sync_client=True) as client:  # another setup, or a user, a moment earlier
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=3, active=False))
        apply_limits(planned)
        limit = client.read_global_concurrency_limit_by_name(name)
    assert (limit.limit, limit.active) == (1, True)


def test_target_flag_limits_the_setup(workspace: Workspace, dbt_project: Path, api: None) -> None:
    """--target only touches the named environment; other outputs of profiles.yml are kept."""
    workspace.write_environments(
        {"defaults": {"dbt_project_dir": str(dbt_project)},
         "environments": {"dev": {"adapter": "duckdb", "path": "d.db"}, "ci": {"adapter": "duckdb", "path": "c.db"}}}
    )  # fmt: skip
    workspace.setup("--profiles-only", "--target", "dev")
    assert list(yaml.safe_load((dbt_project / "profiles.yml").read_text())["shop_analytics"]["outputs"]) == ["dev"]
    result = workspace.setup("--target", "ci")
    assert "dbt-cli-profile-dev" not in result.stdout
    outputs = yaml.safe_load((dbt_project / "profiles.yml").read_text())["shop_analytics"]
    assert list(outputs["outputs"]) == ["dev", "ci"]
    assert outputs["target"] == "dev"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nope"], "Unknown target 'nope'"),
        (["--blocks-only", "--profiles-only"], "not allowed with argument"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_exits_non_zero_without_traceback(workspace: Workspace, args: list[str], message: str) -> None:
    """A user's mistake is one clear line on stderr and a non-zero exit, not a traceback."""
    result = workspace.run("-m", "infrastructure.setup_profiles", *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_profiles_only_needs_no_prefect_api(workspace: Workspace, dbt_project: Path) -> None:
    """`--profiles-only` writes the file dbt reads when run by hand: it used to open a Prefect client anyway, which
    started the temporary server (20 s on a fresh machine) or, where that is turned off, failed with Prefect's
    "No Prefect API URL provided" traceback."""
    workspace.env.pop("PREFECT_API_URL")
    workspace.env["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "false"
    result = workspace.setup("--profiles-only")
    assert "created       targets: dev" in result.stdout
    assert (dbt_project / "profiles.yml").is_file()


def test_a_full_disk_is_one_message_naming_the_file_and_leaves_nothing(workspace: Workspace, tmp_path: Path) -> None:
    """profiles.yml cannot be written, its disk full: one line naming the file and what to do, exit 1, and neither
    the file nor its temporary copy left behind. (Before: a traceback ending in a bare `OSError: [Errno 28]`.)"""
    disk = tmp_path / "small-disk"
    disk.mkdir()
    with small_disk(disk, "2m"):
        project = copy_example_project(disk / "project")
        workspace.write_environments(duckdb_environments(project, tmp_path / "warehouse" / "dev.duckdb", "dev"))
        fill(disk)
        result = workspace.command("setup", ["--profiles-only"], process=False)
        left = sorted(path.name for path in project.glob("*profiles.yml*"))
    assert result.returncode == 1, result.stdout + result.stderr
    said = f"setup_profiles: The disk is full: could not write {project / 'profiles.yml'} (No space left on device)."
    assert said in result.stderr
    assert "Free space on the disk that holds it, then run the command again." in result.stderr
    assert "Traceback" not in result.stderr
    assert left == []


def fill(folder: Path) -> None:
    """Write to `folder` until its disk refuses a single byte more."""
    with (folder / "filler").open("wb", buffering=0) as filler:
        for size in (1 << 20, 1 << 12, 1):
            while wrote(filler, size):
                pass


def wrote(file: BinaryIO, size: int) -> bool:
    """Whether `size` more bytes fitted; False once the disk is full."""
    try:
        file.write(b"\0" * size)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        return False
    return True


def test_the_api_lost_while_the_setup_saves_is_one_message_and_a_second_setup_completes(
    workspace: Workspace, dbt_project: Path, prefect_api: str
) -> None:
    """The Prefect API goes away halfway (a server restarted, a network cut) as the setup saves its first block:
    one line naming the API and what to do, exit 1, not httpx's traceback; the setup run again completes."""
    target = f"lost{uuid.uuid4().hex[:8]}"  # blocks the session's server does not hold yet: the setup saves them
    database = workspace.root / "warehouse" / "dev.duckdb"
    workspace.write_environments(duckdb_environments(dbt_project, database, target))
    with FlakyApi(prefect_api, lost_from=saving_a_block) as lost:
        workspace.env["PREFECT_API_URL"] = lost.api
        workspace.env["PREFECT_CLIENT_MAX_RETRIES"] = "0"  # Prefect retries a dropped call for a minute
        result = workspace.command("setup", ["--blocks-only"], process=False)
        assert lost.lost, "the setup saved no block"
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    said = f"setup_profiles: Cannot reach the Prefect API at {lost.api}: Server disconnected without sending a"
    assert f"{said} response. Start it (`prefect server start`)" in result.stderr

    workspace.env["PREFECT_API_URL"] = prefect_api
    again = workspace.setup("--blocks-only")
    assert f"dbt-cli-profile-{target}" in again.stdout
    assert "Done:" in again.stdout


def saving_a_block(method: str, path: str) -> bool:
    return method == "POST" and path.startswith("/api/block_documents")
