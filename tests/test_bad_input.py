"""Bad input, typed as a user types it: a non-zero exit, one message naming what is wrong, where and
how to fix it, no traceback, and nothing half-done (no profiles.yml, no block, no concurrency limit,
no flow run for a mistake the pipeline's preflight can see).

Each command runs in this process through its `main(argv)`, as its entry point calls it (exit code,
stdout and stderr captured), against the session's real Prefect server: a process per case would
spend its seconds importing Prefect and dbt to print one line. The cases marked `process=True` run
the real commands as processes, so that each entry point (its imports, its exit code, what it prints
and what it does not) stays proven. What each mistake in the environments file says (its key, its
value, the rule, the line) is checked where the file is read: tests/test_environments.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dbt_pipeline.selection import check_selection
from tests.commands import run_in_process
from tests.conftest import Workspace, copy_example_project
from tests.prefect_api import PAGE, every_page, prefect_client

READY = "bad-input-ready"  # a DuckDB target whose blocks exist, for the pipeline's own checks
GCP_PROJECT = "acme-data-123"

Expected = str | re.Pattern[str]

# The rules a value must follow, said in words (a regular expression is not a fix a user can apply);
# any wording will do as long as it names the allowed characters.
PROJECT_ID_RULE = re.compile(r"(?i)lowercase letters.*(digits|numbers).*(dashes|hyphens)")
URL_RULE = re.compile(r"http://.*https://|https://.*http://")  # "must start with http:// or https://"


# --------------------------------------------------------------------------------------------------
# The commands, run as their entry points run them.

# How each command says it failed, once: the one message a refusal must consist of.
FAILED = {"setup": "setup_profiles: ", "pipeline": "pipeline-dbt-complet failed: ", "doctor": "[FAIL]"}


@dataclass
class Commands:
    """The repository's commands against the session's Prefect server, with the workspace's environments file.

    `run` calls a command's main(argv) in this process (tests/commands.py); with `process=True` it starts
    the command as a user types it. Both run with the workspace's environment, which `setenv` and `delenv` set.
    """

    workspace: Workspace

    def setenv(self, name: str, value: str) -> None:
        self.workspace.env[name] = value

    def delenv(self, name: str) -> None:
        self.workspace.env.pop(name, None)

    def run(self, command: str, *args: str, process: bool = False) -> subprocess.CompletedProcess[str]:
        return self.workspace.command(command, args, process=process)


@pytest.fixture
def commands(workspace: Workspace) -> Commands:
    """The commands, run with the workspace's environments file, against the session's Prefect server."""
    commands = Commands(workspace)
    commands.setenv("PIPELINE_ENVIRONMENTS_FILE", str(workspace.environments_file))
    return commands


def set_up_blocks(prefect_api: str, environments_file: Path) -> None:
    """`python -m infrastructure.setup_profiles --blocks-only`, in this process, for a fixture's targets."""
    variables = {**os.environ, "PREFECT_API_URL": prefect_api}
    result = run_in_process("setup", ["--blocks-only", "--environments-file", str(environments_file)], variables)
    assert result.returncode == 0, result.stdout + result.stderr


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
        command: str,
        result: subprocess.CompletedProcess[str],
        expected: Sequence[Expected],
        absent: Sequence[str] = (),
    ) -> None:
        """Non-zero exit, no traceback, one message with every expected piece, and nothing written.

        The message is on stderr; the doctor's, a failed check, is in its checklist on stdout. Every
        problem is listed at once, so that a failure says all that is wrong with the command.
        """
        problems = []
        output = result.stderr + result.stdout
        message = result.stdout if command == "doctor" and result.returncode == 1 else result.stderr
        if result.returncode == 0:
            problems.append("the mistake was accepted: exit 0")
        if "Traceback" in output:
            problems.append("a traceback for a user's mistake")
        # One message: argparse's one error after its usage line, or the command's own, once.
        said = ": error: " if result.returncode == 2 else FAILED[command]
        if message.count(said) != 1:
            problems.append(f"{message.count(said)} messages starting {said!r}, not one")
        for piece in expected:
            found = piece.search(message) if isinstance(piece, re.Pattern) else piece in message
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
        if after.flow_runs != self.api.flow_runs:
            problems.append("a flow run was created for a mistake the preflight can see")
        shown = f"exit {result.returncode}\n--- stderr ---\n{result.stderr[-4000:]}\n--- stdout ---\n"
        shown += result.stdout[-2000:]
        assert not problems, "\n".join(["", *(f"- {problem}" for problem in problems), shown])


def _text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


# --------------------------------------------------------------------------------------------------
# The environments file, as each command meets it. Each mistake's own message is checked in
# tests/test_environments.py; here, that each command turns it into one message and an exit 1.


@dataclass(frozen=True)
class EnvFileCase:
    """An environments file (None: no file at all), the command reading it, and what its message says.

    In `text` and `expected`, NAME is this case's own environment name, PROJECT the dbt project copy.
    """

    id: str
    text: str | None
    expected: tuple[Expected, ...]
    absent: tuple[str, ...] = ()
    command: str = "setup"
    process: bool = False  # run the real command, not its main() in this process


HEAD = "defaults: {dbt_project_dir: PROJECT}\nenvironments:\n"


def _duckdb(extra: str = "") -> str:
    return HEAD + "  NAME: {adapter: duckdb, path: NAME.db" + extra + "}\n"


def _alias_bomb() -> str:
    """Billion laughs: 9 levels of 10 aliases behind a checked field (`threads`), the anchors in its labels."""
    levels = [f"a0: &a0 [{', '.join(['lol'] * 10)}]"]
    levels += [f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]" for level in range(1, 10)]
    return HEAD + "  NAME: {adapter: duckdb, path: x.db, labels: {" + ", ".join(levels) + "}, threads: *a9}\n"


MISSING_FILE = ("Environments file not found: ", "PIPELINE_ENVIRONMENTS_FILE")
UNKNOWN_KEY = ("environments.NAME.thread: unknown key (did you mean 'threads'?)", "Allowed here: ")
ALIAS_BOMB = ("is refused at environments.NAME.labels.a", "aliases stand for more than 10,000 values", "Fix: ")

ENV_FILE_CASES = [
    EnvFileCase("missing-file", None, MISSING_FILE),
    EnvFileCase("unknown-environment-key", _duckdb(", thread: 2"), UNKNOWN_KEY, process=True),
    EnvFileCase(
        "duckdb-path-under-a-file",  # the setup's own check, not the file's
        HEAD + "  NAME: {adapter: duckdb, path: PROJECT/README.md/sub/x.duckdb}\n",
        (
            "environments.NAME.path: cannot create the DuckDB file PROJECT/README.md/sub/x.duckdb",
            "PROJECT/README.md is a file, not a folder",
            "uv run python -m infrastructure.setup_profiles --target NAME",
        ),
    ),
    EnvFileCase("alias-bomb", _alias_bomb(), ALIAS_BOMB, absent=("lol",)),
    EnvFileCase("missing-file", None, MISSING_FILE, command="pipeline"),
    EnvFileCase("unknown-environment-key", _duckdb(", thread: 2"), UNKNOWN_KEY, command="pipeline"),
    EnvFileCase("alias-bomb", _alias_bomb(), ALIAS_BOMB, absent=("lol",), command="pipeline"),
    EnvFileCase("missing-file", None, MISSING_FILE, command="doctor"),
    EnvFileCase("unknown-environment-key", _duckdb(", thread: 2"), UNKNOWN_KEY, command="doctor", process=True),
]


@pytest.mark.parametrize(
    "case",
    ENV_FILE_CASES,
    ids=[f"{case.command}-{case.id}{'-process' if case.process else ''}" for case in ENV_FILE_CASES],
)
def test_environments_file_mistake_names_file_key_and_fix(
    commands: Commands, dbt_project: Path, prefect_api: str, case: EnvFileCase
) -> None:
    """A mistake in the environments file is refused with its file, its key and the fix; nothing is written."""
    name = f"envfile-{case.id}"[:40]
    path = commands.workspace.environments_file
    if case.text is None:
        path = commands.workspace.root / "no-such-dir" / "environments.yaml"
        commands.setenv("PIPELINE_ENVIRONMENTS_FILE", str(path))
    else:
        path.write_text(case.text.replace("PROJECT", str(dbt_project)).replace("NAME", name), encoding="utf-8")
    before = Before.take(prefect_api, dbt_project)

    args = () if case.command == "setup" else ("--target", name)
    result = commands.run(case.command, *args, process=case.process)

    expected = [
        piece.replace("PROJECT", str(dbt_project)).replace("NAME", name) if isinstance(piece, str) else piece
        for piece in case.expected
    ]
    before.assert_refused(case.command, result, [str(path), *expected], case.absent)


# --------------------------------------------------------------------------------------------------
# The setup's command line and the projects it reads


@dataclass(frozen=True)
class CliCase:
    """Arguments (ENV: this case's environment, TMP: its temporary folder) and the message they get."""

    id: str
    args: tuple[str, ...]
    expected: tuple[Expected, ...]
    project_yml: str | None = None  # a folder TMP/project is made with this dbt_project.yml ("": without one)
    process: bool = False  # run the real command, not its main() in this process


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
    commands: Commands, dbt_project: Path, prefect_api: str, case: CliCase
) -> None:
    """A wrong flag or target given to the setup exits non-zero with argparse's or our message, changing nothing."""
    workspace = commands.workspace
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
    result = commands.run("setup", *map(fill, case.args), process=case.process)
    before.assert_refused(
        "setup", result, [fill(piece) if isinstance(piece, str) else piece for piece in case.expected]
    )


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
    commands: Commands, dbt_project: Path, prefect_api: str, case: ProjectCase
) -> None:
    """A missing project, an unreadable dbt_project.yml or profiles.yml stops the setup before any block is saved."""
    env = f"setup-{case.id}"[:40]
    commands.workspace.write_environments(
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
    result = commands.run("setup")
    before.assert_refused(
        "setup",
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
    commands: Commands, dbt_project: Path, prefect_api: str, case: CredentialsCase
) -> None:
    """A missing, malformed or unusable key (or GCP project) for a BigQuery target is refused before any block."""
    env = f"bq-{case.id}"[:40]
    key_path = commands.workspace.root / "keys" / "service-account.json"
    gcp: dict[str, str] = {"credentials_block": f"gcp-{case.id}"[:40]}
    if case.in_environments_file:
        gcp["service_account_key_file"] = str(key_path)
        commands.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    else:
        commands.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_path))
    commands.setenv("GOOGLE_CLOUD_PROJECT", case.gcp_project)
    commands.workspace.write_environments(
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

    result = commands.run("setup")

    expected = [piece.replace("KEY", str(key_path)) if isinstance(piece, str) else piece for piece in case.expected]
    before.assert_refused("setup", result, expected, absent=("BEGIN PRIVATE KEY",))  # the message never quotes the key


def test_malformed_slack_webhook_url_is_refused_without_echoing_it(
    commands: Commands, dbt_project: Path, prefect_api: str
) -> None:
    """A $SLACK_WEBHOOK_URL that is not an http(s) URL is refused, naming the variable but not quoting the secret.

    The real command, in its own process: the secret must appear nowhere it writes, logs included.
    """
    env = "setup-slack-url-without-scheme"
    commands.workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "environments": {env: {"adapter": "duckdb", "path": "a.db", "notification_block": f"{env}-alerts"}},
        }
    )
    commands.setenv("SLACK_WEBHOOK_URL", "hooks.slack.com/services/T000/B000/SECRET-PATH-0123456789")
    before = Before.take(prefect_api, dbt_project)
    result = commands.run("setup", process=True)
    before.assert_refused("setup", result, ["SLACK_WEBHOOK_URL", URL_RULE], absent=("SECRET-PATH-0123456789",))


# --------------------------------------------------------------------------------------------------
# The pipeline's command line


@pytest.fixture(scope="module")
def ready_warehouse(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The blocks of the DuckDB target READY exist (set up once, for real); returns its database path."""
    root = tmp_path_factory.mktemp("ready")
    project = copy_example_project(root / "dbt")
    database = root / "warehouse" / "ready.duckdb"
    environments_file = root / "environments.yaml"
    document = {
        "defaults": {"dbt_project_dir": str(project)},
        "environments": {READY: {"adapter": "duckdb", "path": str(database)}},
    }
    environments_file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    set_up_blocks(prefect_api, environments_file)
    return database


@pytest.fixture
def pipeline_commands(commands: Commands, dbt_project: Path, ready_warehouse: Path) -> Commands:
    """The workspace's environments file declares READY (its blocks exist) and never-set-up (no blocks)."""
    commands.workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "environments": {
                READY: {"adapter": "duckdb", "path": str(ready_warehouse)},
                "never-set-up": {"adapter": "duckdb", "path": "never.db"},
            },
        }
    )
    return commands


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
        process=True,
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
        "select-reading-a-state-without-one",
        ("--target", READY, "--select", "state:modified+ tag:daily"),
        (
            "The selection 'state:modified+ tag:daily' compares with a previous run (dbt's state), and none is given",
            f"add --changed-only to compare with the last good state of target '{READY}', or --state-from TARGET",
        ),
    ),
    CliCase(
        "state-from-unknown-target",
        ("--target", READY, "--state-from", "prd"),
        ("Unknown target 'prd'", "Known targets in ENVFILE: "),
    ),
    CliCase(
        "mode-unknown",
        ("--target", READY, "--mode", "fast"),
        ("argument --mode: invalid choice: 'fast' (choose from 'steps', 'build')",),
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


@pytest.mark.parametrize(
    "case", PIPELINE_CLI_CASES, ids=[f"{case.id}{'-process' if case.process else ''}" for case in PIPELINE_CLI_CASES]
)
def test_pipeline_mistake_is_reported_before_a_flow_run(
    pipeline_commands: Commands, dbt_project: Path, ready_warehouse: Path, prefect_api: str, case: CliCase
) -> None:
    """A wrong target, flag, value or project exits non-zero before any flow run, with the fix, changing nothing."""
    workspace = pipeline_commands.workspace
    if case.project_yml is not None:
        (workspace.root / "project").mkdir()
        if case.project_yml:
            (workspace.root / "project" / "dbt_project.yml").write_text(case.project_yml, encoding="utf-8")

    def fill(text: str) -> str:
        return text.replace("ENVFILE", str(workspace.environments_file)).replace("TMP", str(workspace.root))

    before = Before.take(prefect_api, dbt_project, ready_warehouse.parents[1] / "dbt")
    result = pipeline_commands.run("pipeline", *map(fill, case.args), process=case.process)
    before.assert_refused(
        "pipeline", result, [fill(piece) if isinstance(piece, str) else piece for piece in case.expected]
    )


def test_duckdb_folder_that_cannot_be_created_is_refused_before_a_flow_run(
    commands: Commands, dbt_project: Path, prefect_api: str
) -> None:
    """A DuckDB file whose folder became a file after the setup: exit 1 before any flow run, key and fix, no traceback.

    (The setup refuses such a path itself; the run checks the path of its profile block, the one it would create.)
    """
    workspace = commands.workspace
    env = "bad-input-duckdb-folder"
    database = workspace.root / "warehouse" / "sub" / "x.duckdb"
    workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "environments": {env: {"adapter": "duckdb", "path": str(database)}},
        }
    )
    set_up_blocks(prefect_api, workspace.environments_file)
    (workspace.root / "warehouse").write_text("a file where the folder was\n", encoding="utf-8")
    before = Before.take(prefect_api, dbt_project)

    result = commands.run("pipeline", "--target", env)

    before.assert_refused(
        "pipeline",
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
