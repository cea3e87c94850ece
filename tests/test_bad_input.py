"""Bad input, typed as a user types it: a non-zero exit, one message naming what is wrong, where and
how to fix it, no traceback, and nothing half-done (no profiles.yml, no block, no concurrency limit,
no flow run for a mistake the pipeline's preflight can see)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dbt_pipeline.selection import check_selection
from tests.conftest import Workspace, copy_example_project, make_workspace
from tests.prefect_api import PAGE, every_page, prefect_client

SETUP = ("-m", "infrastructure.setup_profiles")
TIMEOUT = 300  # a preflight failure takes seconds; a hang must not stall the suite
READY = "bad-input-ready"  # a DuckDB target whose blocks exist, for the pipeline's own checks
GCP_PROJECT = "acme-data-123"

Expected = str | re.Pattern[str]

# The rules a value must follow, said in words (a regular expression is not a fix a user can apply);
# any wording will do as long as it names the allowed characters.
NAME_RULE = re.compile(r"(?i)lowercase letters.*(digits|numbers).*(dashes|hyphens)")
DATASET_RULE = re.compile(r"(?i)letters.*(digits|numbers).*underscores")
PROJECT_ID_RULE = NAME_RULE
URL_RULE = re.compile(r"http://.*https://|https://.*http://")  # "must start with http:// or https://"


# --------------------------------------------------------------------------------------------------
# What "nothing half-done" means: the Prefect API and the dbt project are as they were.


@dataclass(frozen=True)
class ApiState:
    """What a command could leave behind in the Prefect API."""

    blocks: frozenset[str]
    limits: frozenset[str]
    flow_runs: int


def api_state(prefect_api: str) -> ApiState:
    """Block documents (type/name), global concurrency limits and the number of flow runs, now."""
    with prefect_client(prefect_api) as client:
        documents = every_page(
            lambda offset: client.read_block_documents(offset=offset, limit=PAGE, include_secrets=False)
        )
        limits = every_page(lambda offset: client.read_global_concurrency_limits(limit=PAGE, offset=offset))
        flow_runs = client.count_flow_runs()
    blocks = {f"{document.block_type.slug if document.block_type else '?'}/{document.name}" for document in documents}
    return ApiState(frozenset(blocks), frozenset(limit.name for limit in limits), flow_runs)


@dataclass(frozen=True)
class Before:
    """The state before a command, to compare with the state after it."""

    prefect_api: str
    api: ApiState
    profiles: dict[Path, str | None]  # each watched profiles.yml and its text (None: absent)

    @classmethod
    def take(cls, prefect_api: str, *projects: Path) -> Before:
        profiles = {project / "profiles.yml": _text(project / "profiles.yml") for project in projects}
        return cls(prefect_api, api_state(prefect_api), profiles)

    def assert_refused(
        self,
        result: subprocess.CompletedProcess[str],
        expected: Sequence[Expected],
        absent: Sequence[str] = (),
        *,
        flow_run_allowed: bool = False,
    ) -> None:
        """Non-zero exit, no traceback, every expected piece of the message on stderr, and nothing written.

        Every problem is listed at once, so that a failure says all that is wrong with the command.
        """
        problems = []
        output = result.stderr + result.stdout
        if result.returncode == 0:
            problems.append("the mistake was accepted: exit 0")
        if "Traceback" in output:
            problems.append("a traceback for a user's mistake")
        for piece in expected:
            found = piece.search(result.stderr) if isinstance(piece, re.Pattern) else piece in result.stderr
            if not found:
                problems.append(
                    f"missing from the message: {piece.pattern if isinstance(piece, re.Pattern) else piece!r}"
                )
        problems += [f"should not be in the output: {piece!r}" for piece in absent if piece in output]
        for path, text in self.profiles.items():
            if _text(path) != text:
                problems.append(f"{path} was {'created' if text is None else 'changed'}")
        after = api_state(self.prefect_api)
        if created := sorted(after.blocks - self.api.blocks):
            problems.append(f"blocks were created: {created}")
        if created := sorted(after.limits - self.api.limits):
            problems.append(f"concurrency limits were created: {created}")
        if not flow_run_allowed and after.flow_runs != self.api.flow_runs:
            problems.append("a flow run was created for a mistake the preflight can see")
        shown = f"exit {result.returncode}\n--- stderr ---\n{result.stderr[-4000:]}\n--- stdout ---\n"
        shown += result.stdout[-2000:]
        assert not problems, "\n".join(["", *(f"- {problem}" for problem in problems), shown])


def _text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def setup_command(workspace: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return workspace.run(*SETUP, *args, timeout=TIMEOUT)


def pipeline_command(workspace: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return workspace.run("prefect_flows/pipeline.py", *args, timeout=TIMEOUT)


# --------------------------------------------------------------------------------------------------
# The environments file


@dataclass(frozen=True)
class EnvFileCase:
    """An environments file (None: no file at all), the command reading it, and what its message says.

    In `text` and `expected`, NAME is this case's own environment name, PROJECT the dbt project copy.
    """

    id: str
    text: str | bytes | None
    expected: tuple[Expected, ...]
    absent: tuple[str, ...] = ()
    command: str = "setup"
    env: tuple[tuple[str, str], ...] = ()  # environment variables of the command


HEAD = "defaults: {dbt_project_dir: PROJECT}\nenvironments:\n"


def _duckdb(extra: str = "") -> str:
    return HEAD + "  NAME: {adapter: duckdb, path: NAME.db" + extra + "}\n"


def _bigquery(extra: str = "") -> str:
    return HEAD + "  NAME: {adapter: bigquery, dataset: analytics" + extra + "}\n"


def _alias_bomb() -> str:
    """Billion laughs: 9 levels of 10 aliases behind a checked field (`threads`), the anchors in its labels."""
    levels = [f"a0: &a0 [{', '.join(['lol'] * 10)}]"]
    levels += [f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]" for level in range(1, 10)]
    return HEAD + "  NAME: {adapter: duckdb, path: x.db, labels: {" + ", ".join(levels) + "}, threads: *a9}\n"


def _named(name: str) -> str:
    return HEAD + f"  '{name}': " + "{adapter: duckdb, path: x.db}\n"


def _bad_name(name: str) -> EnvFileCase:
    return EnvFileCase(
        f"name-{name}",
        _named(name),
        (f"environments.{name}", f"'{name}'", NAME_RULE),
        absent=("[key]",),  # pydantic's internals are not a location a user can find in the file
    )


ENV_FILE_CASES = [
    EnvFileCase("missing-file", None, ("Environments file not found: ", "PIPELINE_ENVIRONMENTS_FILE")),
    EnvFileCase("empty-file", "  \n", ("is empty", "declare at least one environment under 'environments:'")),
    EnvFileCase("not-yaml", "environments:\n  dev: {adapter: duckdb\n", ("is not valid YAML", "line 3")),
    EnvFileCase(
        "not-utf8", b"environments:\n  dev: {adapter: duckdb, path: caf\xe9.db}\n", (re.compile(r"(?i)utf-?8"),)
    ),
    EnvFileCase("a-list", "- dev\n- prod\n", ("expected a mapping with an 'environments' key, got list",)),
    EnvFileCase(
        "unknown-top-level-key",
        "default: {dbt_project_dir: PROJECT}\nenvironments:\n  NAME: {adapter: duckdb, path: x.db}\n",
        ("default: unknown key (did you mean 'defaults'?)", "Allowed here: defaults, environments, gcp"),
    ),
    EnvFileCase(
        "unknown-environment-key",
        _duckdb(", thread: 2"),
        ("environments.NAME.thread: unknown key (did you mean 'threads'?)", "Allowed here: "),
    ),
    EnvFileCase(
        "unknown-gcp-key",
        "gcp: {credentials: x}\n" + _duckdb(),
        ("gcp.credentials: unknown key (did you mean 'credentials_block'?)",),
    ),
    EnvFileCase("threads-many", _duckdb(", threads: many"), ("environments.NAME.threads: ", "integer", "'many'")),
    EnvFileCase("threads-zero", _duckdb(", threads: 0"), ("environments.NAME.threads: ", "greater than 0")),
    EnvFileCase("threads-negative", _duckdb(", threads: -1"), ("environments.NAME.threads: ", "greater than 0", "-1")),
    EnvFileCase("threads-boolean", _duckdb(", threads: true"), ("environments.NAME.threads: ", "integer")),
    EnvFileCase(
        "duplicate-environment",
        _duckdb() + "  NAME: {adapter: duckdb, path: other.db}\n",
        ("'NAME' is declared twice; remove or rename one", "line 4"),
    ),
    EnvFileCase(
        "unknown-adapter",
        HEAD + "  NAME: {adapter: snowflake}\n",
        ("environments.NAME.adapter: unknown adapter 'snowflake'", "use duckdb"),
    ),
    EnvFileCase(
        "missing-adapter",
        HEAD + "  NAME: {path: x.db}\n",
        ("environments.NAME: missing 'adapter'", "use duckdb"),
    ),
    EnvFileCase(
        "environment-not-a-mapping",
        HEAD + "  NAME: duckdb\n",
        ("environments.NAME: ", "'duckdb'"),
    ),
    EnvFileCase(
        "duckdb-without-path",
        HEAD + "  NAME: {adapter: duckdb}\n",
        ("environments.NAME.path: required, but missing",),
    ),
    EnvFileCase(
        "invalid-dataset",
        HEAD + "  NAME: {adapter: bigquery, dataset: analytics-prod}\n",
        ("environments.NAME.dataset", "'analytics-prod'", DATASET_RULE),
    ),
    EnvFileCase(
        "invalid-environment-project",
        _bigquery(", project: My_Project"),
        ("environments.NAME.project", "'My_Project'", PROJECT_ID_RULE),
    ),
    EnvFileCase(
        "invalid-gcp-project", "gcp: {project: acme}\n" + _bigquery(""), ("gcp.project", "'acme'", PROJECT_ID_RULE)
    ),
    EnvFileCase(
        "api-endpoint-without-scheme",
        _bigquery(", project: acme-data-123, api_endpoint: 'localhost:9050'"),
        ("environments.NAME.api_endpoint", "'localhost:9050'", URL_RULE),
    ),
    EnvFileCase(
        "notification-block-invalid-name",
        _duckdb(", notification_block: Alerts Dev"),
        ("environments.NAME.notification_block", "'Alerts Dev'"),
        env=(("SLACK_WEBHOOK_URL", "http://127.0.0.1:9/services/hook"),),
    ),
    _bad_name("../x"),
    _bad_name("a;b"),
    _bad_name("Dev"),
    _bad_name("a b"),
    EnvFileCase(
        "duckdb-path-under-a-file",
        HEAD + "  NAME: {adapter: duckdb, path: PROJECT/README.md/sub/x.duckdb}\n",
        (
            "environments.NAME.path: cannot create the DuckDB file PROJECT/README.md/sub/x.duckdb",
            "PROJECT/README.md is a file, not a folder",
            "uv run python -m infrastructure.setup_profiles --target NAME",
        ),
    ),
    EnvFileCase(
        "alias-bomb",
        _alias_bomb(),
        ("is refused at environments.NAME.labels.a", "aliases stand for more than 10,000 values", "Fix: "),
        absent=("lol",),
    ),
    EnvFileCase(
        "alias-bomb",
        _alias_bomb(),
        ("is refused at environments.NAME.labels.a", "aliases stand for more than 10,000 values", "Fix: "),
        absent=("lol",),
        command="pipeline",
    ),
    EnvFileCase(
        "missing-file", None, ("Environments file not found: ", "PIPELINE_ENVIRONMENTS_FILE"), command="pipeline"
    ),
    EnvFileCase(
        "unknown-environment-key",
        _duckdb(", thread: 2"),
        ("environments.NAME.thread: unknown key (did you mean 'threads'?)",),
        command="pipeline",
    ),
]


@pytest.mark.parametrize("case", ENV_FILE_CASES, ids=[f"{case.command}-{case.id}" for case in ENV_FILE_CASES])
def test_environments_file_mistake_names_file_key_and_fix(
    workspace: Workspace, dbt_project: Path, prefect_api: str, case: EnvFileCase
) -> None:
    """A mistake in the environments file is refused with its file, its key and the fix; nothing is written."""
    name = f"envfile-{case.id}"[:40]
    path = workspace.environments_file
    if case.text is None:
        path = workspace.root / "no-such-dir" / "environments.yaml"
        workspace.env["PIPELINE_ENVIRONMENTS_FILE"] = str(path)
    elif isinstance(case.text, bytes):
        path.write_bytes(case.text)
    else:
        path.write_text(case.text.replace("PROJECT", str(dbt_project)).replace("NAME", name), encoding="utf-8")
    workspace.env.update(case.env)
    before = Before.take(prefect_api, dbt_project)

    result = setup_command(workspace) if case.command == "setup" else pipeline_command(workspace, "--target", name)

    expected = [
        piece.replace("PROJECT", str(dbt_project)).replace("NAME", name) if isinstance(piece, str) else piece
        for piece in case.expected
    ]
    before.assert_refused(result, [str(path), *expected], case.absent)


# --------------------------------------------------------------------------------------------------
# The setup's command line and the projects it reads


@dataclass(frozen=True)
class CliCase:
    """Arguments (ENV: this case's environment, TMP: its temporary folder) and the message they get."""

    id: str
    args: tuple[str, ...]
    expected: tuple[Expected, ...]
    project_yml: str | None = None  # a folder TMP/project is made with this dbt_project.yml ("": without one)


SETUP_CLI_CASES = [
    CliCase(
        "unknown-target-suggests-and-lists",
        ("--target", "ENVx"),
        ("Unknown target 'ENVx' (did you mean 'ENV'?)", "Known targets in ENVFILE: ENV, ENV-b."),
    ),
    CliCase("unknown-flag", ("--dryrun",), ("unrecognized arguments: --dryrun", "usage: ")),
    CliCase(
        "blocks-only-with-profiles-only",
        ("--blocks-only", "--profiles-only"),
        ("argument --profiles-only: not allowed with argument --blocks-only",),
    ),
    CliCase(
        "environments-file-missing",
        ("--environments-file", "TMP/nowhere.yaml"),
        ("Environments file not found: TMP/nowhere.yaml",),
    ),
]


@pytest.mark.parametrize("case", SETUP_CLI_CASES, ids=[case.id for case in SETUP_CLI_CASES])
def test_setup_command_line_mistake_is_refused(
    workspace: Workspace, dbt_project: Path, prefect_api: str, case: CliCase
) -> None:
    """A wrong flag or target given to the setup exits non-zero with argparse's or our message, changing nothing."""
    env = f"setup-{case.id}"[:38]
    workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "environments": {
                env: {"adapter": "duckdb", "path": "a.db"},
                f"{env}-b": {"adapter": "duckdb", "path": "b.db"},
            },
        }
    )

    def fill(text: str) -> str:
        return (
            text.replace("ENVFILE", str(workspace.environments_file))
            .replace("ENV", env)
            .replace("TMP", str(workspace.root))
        )

    before = Before.take(prefect_api, dbt_project)
    result = setup_command(workspace, *map(fill, case.args))
    before.assert_refused(result, [fill(piece) if isinstance(piece, str) else piece for piece in case.expected])


@dataclass(frozen=True)
class ProjectCase:
    """A broken dbt project or local profiles.yml the setup meets, and what its message says (PATH: the project)."""

    id: str
    files: dict[str, str | None]  # files to write in the project copy; None deletes the project folder
    expected: tuple[Expected, ...]
    absent: tuple[str, ...] = ()


SETUP_PROJECT_CASES = [
    ProjectCase(
        "project-dir-missing",
        {"": None},
        ("dbt project directory not found: PATH", "dbt_project_dir"),
        # The setup has no --project-dir flag: suggesting one sends the user to a dead end.
        absent=("--project-dir",),
    ),
    ProjectCase(
        "dbt-project-yml-not-yaml",
        {"dbt_project.yml": "name: shop_analytics\nmodels: [\n"},
        ("PATH/dbt_project.yml is not valid YAML",),
    ),
    ProjectCase(
        "local-profiles-yml-not-yaml",
        {"profiles.yml": "shop_analytics: {target: dev\n"},
        ("PATH/profiles.yml is not valid YAML", "Fix or delete it"),
    ),
]


@pytest.mark.parametrize("case", SETUP_PROJECT_CASES, ids=[case.id for case in SETUP_PROJECT_CASES])
def test_setup_refuses_a_broken_project_before_writing_anything(
    workspace: Workspace, dbt_project: Path, prefect_api: str, case: ProjectCase
) -> None:
    """A missing project, an unreadable dbt_project.yml or profiles.yml stops the setup before any block is saved."""
    env = f"setup-{case.id}"[:40]
    workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "environments": {env: {"adapter": "duckdb", "path": "a.db"}},
        }
    )
    for name, text in case.files.items():
        if text is None:
            shutil.rmtree(dbt_project)
        else:
            (dbt_project / name).write_text(text, encoding="utf-8")
    before = Before.take(prefect_api, dbt_project)
    result = setup_command(workspace)
    before.assert_refused(
        result,
        [piece.replace("PATH", str(dbt_project)) if isinstance(piece, str) else piece for piece in case.expected],
        case.absent,
    )


# --------------------------------------------------------------------------------------------------
# Credentials of a BigQuery environment


def service_account_key(private_key: str | None = None) -> dict[str, str]:
    """A service-account key of the right shape; with a generated RSA key unless `private_key` is given."""
    if private_key is None:
        private_key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            .decode()
        )
    return {
        "type": "service_account", "project_id": GCP_PROJECT, "private_key_id": "k1", "private_key": private_key,
        "client_email": f"dbt@{GCP_PROJECT}.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    }  # fmt: skip


@dataclass(frozen=True)
class CredentialsCase:
    """A key file's content (None: no file), where it is named, and what the message says (KEY: its path)."""

    id: str
    key: str | None
    expected: tuple[Expected, ...]
    in_environments_file: bool = False  # gcp.service_account_key_file rather than $GOOGLE_APPLICATION_CREDENTIALS
    gcp_project: str = GCP_PROJECT


CREDENTIALS_CASES = [
    CredentialsCase(
        "key-file-missing", None, ("Service-account key file not found: KEY", "GOOGLE_APPLICATION_CREDENTIALS")
    ),
    CredentialsCase(
        "key-file-missing-in-environments-file",
        None,
        ("Service-account key file not found: KEY", "gcp.service_account_key_file"),
        in_environments_file=True,
    ),
    CredentialsCase("key-file-not-json", "-----BEGIN PRIVATE KEY-----\n", ("KEY is not a JSON service-account key",)),
    CredentialsCase(
        "key-file-authorized-user",
        json.dumps({"type": "authorized_user"}),
        ("KEY is not a service-account key", "GOOGLE_APPLICATION_CREDENTIALS"),
    ),
    CredentialsCase(
        "private-key-does-not-parse",
        json.dumps(service_account_key("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")),
        ("KEY", "private_key", "Create a new key"),
    ),
    CredentialsCase(
        "google-cloud-project-invalid",
        "VALID",
        ("GOOGLE_CLOUD_PROJECT", "'My Project!'", PROJECT_ID_RULE),
        gcp_project="My Project!",
    ),
]


@pytest.mark.parametrize("case", CREDENTIALS_CASES, ids=[case.id for case in CREDENTIALS_CASES])
def test_bad_credentials_are_refused_without_quoting_them(
    workspace: Workspace, dbt_project: Path, prefect_api: str, case: CredentialsCase
) -> None:
    """A missing, malformed or unusable key (or GCP project) for a BigQuery target is refused before any block."""
    env = f"bq-{case.id}"[:40]
    key_path = workspace.root / "keys" / "service-account.json"
    gcp: dict[str, str] = {"credentials_block": f"gcp-{case.id}"[:40]}
    if case.in_environments_file:
        gcp["service_account_key_file"] = str(key_path)
        workspace.env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    else:
        workspace.env["GOOGLE_APPLICATION_CREDENTIALS"] = str(key_path)
    workspace.env["GOOGLE_CLOUD_PROJECT"] = case.gcp_project
    workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "gcp": gcp,
            "environments": {env: {"adapter": "bigquery", "dataset": "analytics", "location": "EU"}},
        }
    )
    if case.key is not None:
        key_path.parent.mkdir()
        key_path.write_text(json.dumps(service_account_key()) if case.key == "VALID" else case.key, encoding="utf-8")
    before = Before.take(prefect_api, dbt_project)

    result = setup_command(workspace)

    expected = [piece.replace("KEY", str(key_path)) if isinstance(piece, str) else piece for piece in case.expected]
    before.assert_refused(result, expected, absent=("BEGIN PRIVATE KEY",))  # the message never quotes the key


def test_malformed_slack_webhook_url_is_refused_without_echoing_it(
    workspace: Workspace, dbt_project: Path, prefect_api: str
) -> None:
    """A $SLACK_WEBHOOK_URL that is not an http(s) URL is refused, naming the variable but not quoting the secret."""
    env = "setup-slack-url-without-scheme"
    workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "environments": {env: {"adapter": "duckdb", "path": "a.db", "notification_block": f"{env}-alerts"}},
        }
    )
    workspace.env["SLACK_WEBHOOK_URL"] = "hooks.slack.com/services/T000/B000/SECRET-PATH-0123456789"
    before = Before.take(prefect_api, dbt_project)
    result = setup_command(workspace)
    before.assert_refused(result, ["SLACK_WEBHOOK_URL", URL_RULE], absent=("SECRET-PATH-0123456789",))


# --------------------------------------------------------------------------------------------------
# The pipeline's command line


@pytest.fixture(scope="module")
def ready_warehouse(prefect_api: str, prefect_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The blocks of the DuckDB target READY exist (set up once, for real); returns its database path."""
    root = tmp_path_factory.mktemp("ready")
    project = copy_example_project(root / "dbt")
    database = root / "warehouse" / "ready.duckdb"
    workspace = make_workspace(root, prefect_api, prefect_home)
    workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(project)},
            "environments": {READY: {"adapter": "duckdb", "path": str(database)}},
        }
    )
    workspace.setup("--blocks-only")
    return database


@pytest.fixture
def pipeline_workspace(workspace: Workspace, dbt_project: Path, ready_warehouse: Path) -> Workspace:
    """The workspace's environments file declares READY (its blocks exist) and never-set-up (no blocks)."""
    workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "environments": {
                READY: {"adapter": "duckdb", "path": str(ready_warehouse)},
                "never-set-up": {"adapter": "duckdb", "path": "never.db"},
            },
        }
    )
    return workspace


PIPELINE_CLI_CASES = [
    CliCase(
        "unknown-target-suggests-and-lists",
        ("--target", "bad-input-redy"),
        ("Unknown target 'bad-input-redy' (did you mean 'bad-input-ready'?)", "Known targets in ENVFILE: "),
    ),
    CliCase("target-with-shell-characters", ("--target", "a;b"), ("Unknown target 'a;b'", "Known targets in")),
    CliCase(
        "blocks-missing-before-setup",
        ("--target", "never-set-up"),
        (
            "Prefect block 'dbt-cli-profile-never-set-up' (dbt CLI Profile) not found on this Prefect API",
            "Create it with: uv run python -m infrastructure.setup_profiles --blocks-only --target never-set-up",
        ),
    ),
    CliCase("unknown-flag", ("--target", READY, "--selct", "orders"), ("unrecognized arguments: --selct", "usage: ")),
    CliCase(
        "select-unknown-method",
        ("--target", READY, "--select", "model:orders"),
        ("Invalid --select 'model:orders': 'model' is not a valid method name (valid: fqn, tag,", "node-selection"),
    ),
    CliCase(
        "select-without-value",
        ("--target", READY, "--select", "staging tag:"),
        ("Invalid --select 'staging tag:': 'tag:' has no value to match",),
    ),
    CliCase(
        "exclude-at-prefix-and-plus-suffix",
        ("--target", READY, "--exclude", "@orders+"),
        ("Invalid --exclude '@orders+': '@orders+' combines the '@' prefix and a '+' suffix",),
    ),
    CliCase(
        "retries-negative",
        ("--target", READY, "--select", "raw_stores", "--retries", "-1"),
        ("--retries", re.compile(r"-1\b")),
    ),
    CliCase(
        "retry-delay-negative",
        ("--target", READY, "--select", "raw_stores", "--retry-delay", "-5"),
        ("--retry-delay", re.compile(r"-5\b")),
    ),
    CliCase(
        "project-dir-missing",
        ("--target", READY, "--project-dir", "TMP/nowhere"),
        ("dbt project directory not found: TMP/nowhere", "--project-dir"),
    ),
    CliCase(
        "project-dir-without-dbt-project-yml",
        ("--target", READY, "--project-dir", "TMP/project"),
        ("TMP/project is not a dbt project: it has no dbt_project.yml", "Point --project-dir at the folder"),
        project_yml="",
    ),
    CliCase(
        "dbt-project-yml-not-yaml",
        ("--target", READY, "--project-dir", "TMP/project"),
        ("TMP/project/dbt_project.yml is not valid YAML", "line 3"),
        project_yml="name: shop\nmodels: [\n",
    ),
    CliCase(
        "dbt-project-yml-without-name",
        ("--target", READY, "--project-dir", "TMP/project"),
        ("TMP/project/dbt_project.yml has no 'name'",),
        project_yml="- a list\n",
    ),
]


@pytest.mark.parametrize("case", PIPELINE_CLI_CASES, ids=[case.id for case in PIPELINE_CLI_CASES])
def test_pipeline_mistake_is_reported_before_a_flow_run(
    pipeline_workspace: Workspace, dbt_project: Path, ready_warehouse: Path, prefect_api: str, case: CliCase
) -> None:
    """A wrong target, flag, value or project exits non-zero before any flow run, with the fix, changing nothing."""
    workspace = pipeline_workspace
    if case.project_yml is not None:
        (workspace.root / "project").mkdir()
        if case.project_yml:
            (workspace.root / "project" / "dbt_project.yml").write_text(case.project_yml, encoding="utf-8")

    def fill(text: str) -> str:
        return text.replace("ENVFILE", str(workspace.environments_file)).replace("TMP", str(workspace.root))

    before = Before.take(prefect_api, dbt_project, ready_warehouse.parents[1] / "dbt")
    result = pipeline_command(workspace, *map(fill, case.args))
    before.assert_refused(result, [fill(piece) if isinstance(piece, str) else piece for piece in case.expected])


def test_duckdb_folder_that_cannot_be_created_is_refused_before_a_flow_run(
    workspace: Workspace, dbt_project: Path, prefect_api: str
) -> None:
    """A DuckDB file whose folder became a file after the setup: exit 1 before any flow run, key and fix, no traceback.

    (The setup refuses such a path itself; the run checks the path of its profile block, the one it would create.)
    """
    env = "bad-input-duckdb-folder"
    database = workspace.root / "warehouse" / "sub" / "x.duckdb"
    workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "environments": {env: {"adapter": "duckdb", "path": str(database)}},
        }
    )
    workspace.setup("--blocks-only")
    (workspace.root / "warehouse").write_text("a file where the folder was\n", encoding="utf-8")
    before = Before.take(prefect_api, dbt_project)

    result = pipeline_command(workspace, "--target", env)

    before.assert_refused(
        result,
        [
            f"{workspace.environments_file} is invalid:",
            f"environments.{env}.path: cannot create the DuckDB file {database}",
            f"{workspace.root / 'warehouse'} is a file, not a folder",
            f"uv run python -m infrastructure.setup_profiles --target {env}",
        ],
        absent=("NotADirectoryError",),
    )


@pytest.mark.parametrize(
    "selection",
    [
        "orders",
        "staging+",
        "+fct_orders",
        "2+fct_orders+1",
        "@int_orders",
        "tag:daily,config.materialized:view",
        "path:models/marts test_type:unit",
        "source:shop+",
        "resource_type:seed",
        "state:modified+",
        "fqn:*",
    ],
)
def test_valid_selections_pass_the_check(selection: str) -> None:
    """The check before a run refuses only what dbt's grammar refuses: every documented form passes."""
    check_selection("--select", selection)
