"""No secret leaks: a service-account key, a Slack webhook URL and a PostgreSQL password, each carrying a
recognisable marker, go into the Prefect blocks and nowhere else (output, logs, parameters, artifacts,
files, the repository).

One setup (a BigQuery target with a generated key, a DuckDB target alerting through Slack) and one
failing pipeline run (a broken model, an unreachable webhook) are shared by most tests of this module;
a PostgreSQL server of its own, whose password is a marker, serves a second failing run.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL, temporary_settings

from dbt_pipeline.profiles import private_profiles_dir, profile_outputs, profiles_document
from tests.conftest import REPO, Workspace, copy_example_slice, make_workspace
from tests.postgres_server import running_postgres
from tests.prefect_api import all_task_runs, prefect_client, prefect_logs, read_flow_run

GCP_PROJECT = "acme-data-123"
DUCKDB_TARGET = "secrets-dev"
BIGQUERY_TARGET = "secrets-prod"
CREDENTIALS_BLOCK = "gcp-credentials-secrets"
WEBHOOK_BLOCK = "alerts-secrets"
POSTGRES_TARGET = "secrets-pg"
POSTGRES_SECRET_BLOCK = "secrets-pg-password"
# Folders of the repository that are not the project's files: tools' caches and the virtualenv.
NOT_THE_PROJECT = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__", "node_modules"}


# --------------------------------------------------------------------------------------------------
# The run every test of this module inspects


@dataclass
class ProfileWatcher:
    """Polls a temporary folder for rendered profile dirs and records their files' modes while they exist."""

    folder: Path
    seen: dict[str, dict[str, int]] = field(default_factory=dict)  # dir name -> {"." or file name: mode}
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ProfileWatcher:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            for directory in self.folder.glob("dbt-profiles-*"):
                try:
                    modes = {".": stat.S_IMODE(directory.stat().st_mode)}
                    modes |= {path.name: stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir()}
                except FileNotFoundError:  # removed between the listing and the stat: the run ended
                    continue
                self.seen.setdefault(directory.name, {}).update(modes)
            self._stop.wait(0.02)


@dataclass(frozen=True)
class SecretRun:
    """What the module's setup and pipeline run produced, and the markers that must not leak."""

    workspace: Workspace
    project: Path
    key_file: Path
    markers: dict[str, str]  # what the marker comes from -> the marker
    setup: subprocess.CompletedProcess[str]
    pipeline: subprocess.CompletedProcess[str]
    flow_run: FlowRun
    rendered: dict[str, dict[str, int]]
    started: float


def generated_key(path: Path) -> list[str]:
    """Write a service-account key with a fresh RSA key to `path`; return markers cut from the private key."""
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    key = {
        "type": "service_account", "project_id": GCP_PROJECT, "private_key_id": uuid.uuid4().hex, "private_key": pem,
        "client_email": f"dbt@{GCP_PROJECT}.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(key), encoding="utf-8")
    body = pem.strip().splitlines()[1:-1]
    return [line[8:48] for line in body[1:4]]  # 40 characters of three lines: unique, and unbroken by wrapping


def find_markers(text: str | bytes, markers: dict[str, str]) -> list[str]:
    """The markers found in `text`, by what they come from."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return [source for source, marker in markers.items() if marker.encode() in data]


def files_with_markers(paths: Iterator[Path] | list[Path], markers: dict[str, str]) -> dict[str, list[str]]:
    """Each readable file among `paths` that holds a marker, and which."""
    found: dict[str, list[str]] = {}
    for path in paths:
        if not path.is_file() or path.is_symlink():
            continue
        try:
            hits = find_markers(path.read_bytes(), markers)
        except OSError:
            continue
        if hits:
            found[str(path)] = hits
    return found


def recorded_runs(prefect_api: str, flow_run: FlowRun, output: str) -> str:
    """The flow run's parameters and state message, and every task run as the API records it."""
    recorded = [json.dumps(flow_run.parameters, default=str), flow_run.state.message if flow_run.state else ""]
    recorded += [task_run.model_dump_json() for task_run in all_task_runs(prefect_api, output)]
    return "\n".join(str(item) for item in recorded)


def artifacts_of(prefect_api: str, flow_run: FlowRun) -> str:
    """The artifacts the flow run published, as JSON."""
    with prefect_client(prefect_api) as client:
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
    return "\n".join(artifact.model_dump_json() for artifact in artifacts)


def dbt_outputs(project: Path) -> list[Path]:
    """Every file of dbt's target/ and logs/ folders."""
    return [path for folder in (project / "target", project / "logs") for path in folder.rglob("*")]


def repository_files(since: float) -> list[Path]:
    """The repository's files (`git ls-files`: tracked and untracked) and any file in it written `since`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    paths = {REPO / name for name in listed.split("\0") if name}
    assert len(paths) > 50, "git ls-files listed nothing"
    for directory, subdirectories, files in os.walk(REPO):
        subdirectories[:] = [name for name in subdirectories if name not in NOT_THE_PROJECT]
        for name in files:
            path = Path(directory) / name
            try:
                if path.stat().st_mtime >= since:
                    paths.add(path)
            except OSError:
                continue
    return sorted(paths)


def prefect_home_files(prefect_home: Path) -> list[Path]:
    """Prefect's home but the API's database, which holds the blocks (and so, legitimately, the secrets)."""
    return [path for path in prefect_home.rglob("*") if not path.name.startswith("prefect.db")]


@pytest.fixture(scope="module")
def secret_run(prefect_api: str, prefect_home: Path, tmp_path_factory: pytest.TempPathFactory) -> SecretRun:
    """Setup with a key, a webhook URL, then a failing pipeline run alerting through an unreachable webhook."""
    started = time.time()
    root = tmp_path_factory.mktemp("secrets")
    project = copy_example_slice(root / "dbt")
    (project / "models" / "marts" / "broken_revenue.sql").write_text("select amount from no_such_table\n")
    key_file = root / "keys" / "service-account.json"
    key_markers = generated_key(key_file)
    webhook_marker = f"SECRET-MARKER-{uuid.uuid4().hex}"
    markers = {f"private key, line {index + 2}": marker for index, marker in enumerate(key_markers)}
    markers["Slack webhook URL"] = webhook_marker

    environments = root / "environments.yaml"
    environments.write_text(
        yaml.safe_dump(
            {
                "defaults": {"dbt_project_dir": str(project)},
                "gcp": {"credentials_block": CREDENTIALS_BLOCK},
                "environments": {
                    DUCKDB_TARGET: {
                        "adapter": "duckdb",
                        "path": str(root / "warehouse" / "dev.duckdb"),
                        "notification_block": WEBHOOK_BLOCK,
                    },
                    BIGQUERY_TARGET: {"adapter": "bigquery", "dataset": "analytics_prod", "location": "EU"},
                },
            },
            sort_keys=False,
        ),
        encoding="utf-8",
    )
    workspace = make_workspace(
        root,
        prefect_api,
        prefect_home,
        GOOGLE_CLOUD_PROJECT=GCP_PROJECT,
        GOOGLE_APPLICATION_CREDENTIALS=str(key_file),
        # The discard port: nothing listens, so the alert fails and its failure path is exercised too.
        SLACK_WEBHOOK_URL=f"http://127.0.0.1:9/services/T000/B000/{webhook_marker}",
    )
    setup = workspace.setup(process=True)  # the command as it runs, secrets and all
    with ProfileWatcher(root / "tmp") as watcher:
        pipeline = workspace.pipeline(
            "--target", DUCKDB_TARGET, "--select", "raw_stores broken_revenue", "--retries", "0"
        )
    flow_run = read_flow_run(prefect_api, pipeline.stdout + pipeline.stderr)
    return SecretRun(workspace, project, key_file, markers, setup, pipeline, flow_run, dict(watcher.seen), started)


@pytest.fixture
def api(prefect_api: str) -> Iterator[None]:
    """Point this process's Prefect client at the test server."""
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        yield


# --------------------------------------------------------------------------------------------------
# The setup


def test_run_exercised_the_secrets_and_the_failure_paths(secret_run: SecretRun) -> None:
    """The setup stored both secrets' blocks, the run failed on the broken model and tried to send its alert."""
    assert f"created       {CREDENTIALS_BLOCK}" in secret_run.setup.stdout
    assert f"created       {WEBHOOK_BLOCK}" in secret_run.setup.stdout
    assert f"created       dbt-cli-profile-{BIGQUERY_TARGET}" in secret_run.setup.stdout
    output = secret_run.pipeline.stdout + secret_run.pipeline.stderr
    assert secret_run.pipeline.returncode == 1, output[-3000:]
    assert "model.shop_analytics.broken_revenue (error)" in secret_run.pipeline.stderr
    assert f"Could not send the FAILED alert for target '{DUCKDB_TARGET}'" in output
    key_sources = sorted(source for source in secret_run.markers if source.startswith("private key"))
    assert files_with_markers([secret_run.key_file], secret_run.markers) == {str(secret_run.key_file): key_sources}


def test_setup_output_shows_no_secret(secret_run: SecretRun) -> None:
    """The setup's stdout and stderr name blocks and files, never the key's content or the webhook URL."""
    assert find_markers(secret_run.setup.stdout, secret_run.markers) == []
    assert find_markers(secret_run.setup.stderr, secret_run.markers) == []
    assert "PRIVATE KEY" not in secret_run.setup.stdout + secret_run.setup.stderr


def test_blocks_hold_the_secrets_as_secrets(secret_run: SecretRun, api: None) -> None:
    """Each block shows its secret only when secrets are asked for; the key is stored once, in the credentials block."""
    with get_client(sync_client=True) as client:
        documents = {
            name: (
                client.read_block_document_by_name(name=name, block_type_slug=slug, include_secrets=False),
                client.read_block_document_by_name(name=name, block_type_slug=slug, include_secrets=True),
            )
            for slug, name in [
                ("gcp-credentials", CREDENTIALS_BLOCK),
                ("dbt-cli-bigquery-target-configs", f"bigquery-target-configs-{BIGQUERY_TARGET}"),
                ("dbt-cli-profile", f"dbt-cli-profile-{BIGQUERY_TARGET}"),
                ("dbt-cli-profile", f"dbt-cli-profile-{DUCKDB_TARGET}"),
                ("slack-incoming-webhook", WEBHOOK_BLOCK),
            ]
        }
    for name, (masked, _) in documents.items():
        assert find_markers(json.dumps(masked.data, default=str), secret_run.markers) == [], name
    key_sources = sorted(source for source in secret_run.markers if source.startswith("private key"))
    assert sorted(find_markers(json.dumps(documents[CREDENTIALS_BLOCK][1].data), secret_run.markers)) == key_sources
    assert find_markers(json.dumps(documents[WEBHOOK_BLOCK][1].data), secret_run.markers) == ["Slack webhook URL"]
    # The target configs reference the credentials block rather than embedding a copy of the key.
    configs = documents[f"bigquery-target-configs-{BIGQUERY_TARGET}"][0]
    assert configs.block_document_references.get("credentials", {}).get("block_document", {}).get("name") == (
        CREDENTIALS_BLOCK
    )


def test_local_profiles_file_names_the_key_file_and_holds_no_secret(secret_run: SecretRun) -> None:
    """dbt/profiles.yml (owner-only) points the BigQuery target at the key file and contains neither secret."""
    path = secret_run.project / "profiles.yml"
    text = path.read_text(encoding="utf-8")
    assert find_markers(text, secret_run.markers) == []
    assert "private_key" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    output = yaml.safe_load(text)["shop_analytics"]["outputs"][BIGQUERY_TARGET]
    assert (output["method"], output["keyfile"]) == ("service-account", str(secret_run.key_file))
    assert "keyfile_json" not in output


# --------------------------------------------------------------------------------------------------
# The pipeline run


def test_pipeline_output_shows_no_secret(secret_run: SecretRun) -> None:
    """The failing run's stdout and stderr (dbt's errors, the alert's failure) hold no secret."""
    assert find_markers(secret_run.pipeline.stdout, secret_run.markers) == []
    assert find_markers(secret_run.pipeline.stderr, secret_run.markers) == []


def test_prefect_logs_of_the_run_show_no_secret(secret_run: SecretRun, prefect_api: str) -> None:
    """Every log line the flow run and its tasks sent to Prefect is free of secrets."""
    text = prefect_logs(prefect_api, secret_run.flow_run)
    assert "no_such_table" in text, "the run's logs were not found"
    assert find_markers(text, secret_run.markers) == []


def test_flow_and_task_runs_record_no_secret(secret_run: SecretRun, prefect_api: str) -> None:
    """The flow run's parameters and state, and every task run's inputs and state message, hold no secret."""
    assert secret_run.flow_run.parameters["target"] == DUCKDB_TARGET
    output = secret_run.pipeline.stdout + secret_run.pipeline.stderr
    text = recorded_runs(prefect_api, secret_run.flow_run, output)
    assert "dbt-run" in text
    assert find_markers(text, secret_run.markers) == []


def test_artifacts_of_the_run_show_no_secret(secret_run: SecretRun, prefect_api: str) -> None:
    """The run report and node table published as Prefect artifacts hold no secret."""
    text = artifacts_of(prefect_api, secret_run.flow_run)
    assert "broken_revenue" in text, "the run published no report"
    assert find_markers(text, secret_run.markers) == []


def test_dbt_target_and_logs_folders_hold_no_secret(secret_run: SecretRun) -> None:
    """dbt's artifacts, the run's report and dbt's debug log are free of secrets."""
    assert (secret_run.project / "logs" / "dbt.log").is_file()
    assert files_with_markers(dbt_outputs(secret_run.project), secret_run.markers) == {}


def test_temporary_dirs_hold_no_secret_and_no_rendered_profile(secret_run: SecretRun) -> None:
    """After the run, the commands' temporary folder holds no secret and no rendered profile."""
    tmp = secret_run.workspace.root / "tmp"
    assert files_with_markers(list(tmp.rglob("*")), secret_run.markers) == {}
    assert list(tmp.glob("dbt-profiles-*")) == [], "the rendered profile must be removed after a failed run"


def test_repository_tree_holds_no_secret(secret_run: SecretRun) -> None:
    """No file of the repository (tracked, untracked, or written since the run started) holds a secret."""
    assert files_with_markers(repository_files(secret_run.started), secret_run.markers) == {}


def test_prefect_home_holds_no_secret_outside_the_database(secret_run: SecretRun, prefect_home: Path) -> None:
    """Prefect's home (server log, result storage, settings) holds no secret; only the API's database may."""
    assert files_with_markers(prefect_home_files(prefect_home), secret_run.markers) == {}


# --------------------------------------------------------------------------------------------------
# The PostgreSQL password


@dataclass(frozen=True)
class PostgresRun:
    """A failing run on PostgreSQL whose password, read from a Prefect Secret block, is a marker."""

    workspace: Workspace
    project: Path
    markers: dict[str, str]
    setup: subprocess.CompletedProcess[str]
    pipeline: subprocess.CompletedProcess[str]
    flow_run: FlowRun
    started: float


@pytest.fixture(scope="module")
def postgres_run(prefect_api: str, prefect_home: Path, tmp_path_factory: pytest.TempPathFactory) -> PostgresRun:
    """A server of its own whose password is a marker; setup, then a run whose model fails after connecting."""
    started = time.time()
    password = f"SECRET-PGPASS-{uuid.uuid4().hex}"
    root = tmp_path_factory.mktemp("secrets-postgres")
    project = copy_example_slice(root / "dbt")
    (project / "models" / "marts" / "broken_revenue.sql").write_text("select amount from no_such_table\n")
    workspace = make_workspace(root, prefect_api, prefect_home)
    with running_postgres(password=password) as server:
        environment = {
            "adapter": "postgres", "host": server.host, "port": server.port, "user": server.user,
            "database": server.database, "schema": "analytics", "password_secret_block": POSTGRES_SECRET_BLOCK,
        }  # fmt: skip
        workspace.write_environments(
            {"defaults": {"dbt_project_dir": str(project)}, "environments": {POSTGRES_TARGET: environment}}
        )
        with temporary_settings({PREFECT_API_URL: prefect_api}):
            Secret(value=password).save(POSTGRES_SECRET_BLOCK, overwrite=True)
        setup = workspace.setup(process=True)  # the command as it runs, secrets and all
        pipeline = workspace.pipeline(
            "--target", POSTGRES_TARGET, "--select", "raw_stores broken_revenue", "--retries", "0"
        )
    flow_run = read_flow_run(prefect_api, pipeline.stdout + pipeline.stderr)
    markers = {"PostgreSQL password": password}
    return PostgresRun(workspace, project, markers, setup, pipeline, flow_run, started)


def test_postgres_password_is_referenced_never_stored_in_the_profile(postgres_run: PostgresRun, api: None) -> None:
    """The profile block and the local profiles.yml name the password's variable; only the Secret block holds it."""
    with get_client(sync_client=True) as client:
        profile = client.read_block_document_by_name(
            name=f"dbt-cli-profile-{POSTGRES_TARGET}", block_type_slug="dbt-cli-profile", include_secrets=True
        )
    secret = Secret.load(POSTGRES_SECRET_BLOCK)
    assert isinstance(secret, Secret)
    assert secret.get() == postgres_run.markers["PostgreSQL password"]
    reference = "{{ env_var('DBT_ENV_SECRET_POSTGRES_PASSWORD') }}"
    local = (postgres_run.project / "profiles.yml").read_text(encoding="utf-8")
    assert yaml.safe_load(local)["shop_analytics"]["outputs"][POSTGRES_TARGET]["password"] == reference
    assert reference in json.dumps(profile.data)
    setup_output = postgres_run.setup.stdout + postgres_run.setup.stderr
    for text in (json.dumps(profile.data, default=str), local, setup_output):
        assert find_markers(text, postgres_run.markers) == []


def test_postgres_run_leaks_its_password_nowhere(
    postgres_run: PostgresRun, prefect_api: str, prefect_home: Path
) -> None:
    """After a run that connected and then failed, the password is in no output, log, record, artifact or file."""
    output = postgres_run.pipeline.stdout + postgres_run.pipeline.stderr
    assert postgres_run.pipeline.returncode == 1, output[-3000:]
    assert "model.shop_analytics.broken_revenue (error)" in postgres_run.pipeline.stderr  # connected, then failed
    tmp = postgres_run.workspace.root / "tmp"
    places = {
        "pipeline stdout and stderr": find_markers(output, postgres_run.markers),
        "Prefect logs of the run": find_markers(prefect_logs(prefect_api, postgres_run.flow_run), postgres_run.markers),
        "flow and task runs": find_markers(
            recorded_runs(prefect_api, postgres_run.flow_run, output), postgres_run.markers
        ),
        "artifacts": find_markers(artifacts_of(prefect_api, postgres_run.flow_run), postgres_run.markers),
        "dbt target/ and logs/": files_with_markers(dbt_outputs(postgres_run.project), postgres_run.markers),
        "temporary dirs": files_with_markers(list(tmp.rglob("*")), postgres_run.markers),
        "Prefect home": files_with_markers(prefect_home_files(prefect_home), postgres_run.markers),
        "repository": files_with_markers(repository_files(postgres_run.started), postgres_run.markers),
    }
    assert {place: found for place, found in places.items() if found} == {}
    assert list(tmp.glob("dbt-profiles-*")) == [], "the rendered profile must be removed after a failed run"


# --------------------------------------------------------------------------------------------------
# The rendered profile


def test_rendered_profile_was_private_while_the_run_used_it(secret_run: SecretRun) -> None:
    """During the run, the rendered profile lived in a 0700 directory with owner-only files, gone afterwards."""
    assert secret_run.rendered, "no rendered profile directory was seen during the run"
    for name, modes in secret_run.rendered.items():
        assert modes.pop(".") == 0o700, name
        assert "profiles.yml" in modes, name
        assert set(modes.values()) == {0o600}, (name, modes)
        assert not (secret_run.workspace.root / "tmp" / name).exists()


@pytest.mark.parametrize("fails", [False, True], ids=["after-success", "after-failure"])
def test_private_profiles_dir_is_owner_only_and_removed(fails: bool) -> None:
    """A profile carrying a key is written 0600 in a 0700 temporary dir and removed on exit, failing or not."""
    marker = f"SECRET-MARKER-{uuid.uuid4().hex}"
    configs = {
        "type": "bigquery", "schema": "analytics", "threads": 1, "project": GCP_PROJECT,
        "credentials": {"service_account_info": {"type": "service_account", "private_key": marker}},
    }  # fmt: skip
    document = profiles_document("shop_analytics", "prod", profile_outputs(configs))
    seen: list[Path] = []
    expectation = pytest.raises(RuntimeError, match="dbt crashed") if fails else contextlib.nullcontext()
    with expectation, private_profiles_dir(document) as directory:
        seen.append(directory)
        profile = directory / "profiles.yml"
        assert directory.parent == Path(tempfile.gettempdir())
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert stat.S_IMODE(profile.stat().st_mode) == 0o600
        assert [path.name for path in directory.iterdir()] == ["profiles.yml"]
        assert marker in profile.read_text()
        if fails:
            raise RuntimeError("dbt crashed")
    assert not seen[0].exists()
