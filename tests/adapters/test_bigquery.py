"""The BigQuery adapter: its project, its credentials and their blocks, its profile, its doctor check.

In-process and offline: the service-account keys are generated here (Google's endpoints are never
called), and Application Default Credentials are those `gcloud auth application-default login`
writes, in a private gcloud folder. tests/test_setup_profiles.py and tests/test_bad_input.py run the
same paths end to end through the setup's command line; here each rule is checked at the adapter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import google.auth.compute_engine._metadata
import pytest
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from dbt.adapters.bigquery.credentials import BigQueryCredentials, create_google_credentials
from google.oauth2 import service_account
from prefect.blocks.core import Block
from prefect_gcp import GcpCredentials

from dbt_pipeline.adapters.bigquery import ADC_WARNING, BigQueryEnvironment, read_service_account_key
from dbt_pipeline.environments import Environments
from dbt_pipeline.errors import CheckFailedError, ConfigError, CredentialsError, TargetSkipped
from dbt_pipeline.profile_blocks import configs_data
from dbt_pipeline.profiles import profile_outputs

Load = Callable[[str], Environments]

CLIENT_EMAIL = "dbt@test-project.iam.gserviceaccount.com"
UNPARSABLE_PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def service_account_key(private_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """A well-formed service-account key with a freshly generated RSA key (Google's endpoints are never called)."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "1234567890",
        "token_uri": "http://127.0.0.1:9/token",
    }


def secret_parts(key: dict[str, Any]) -> list[str]:
    """Pieces of the private key that no message, profile file or repr may show."""
    body = key["private_key"].splitlines()[1:-1]
    return [line for line in body if len(line) > 20][:3]


@pytest.fixture(autouse=True)
def _nothing_from_this_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key, no project, no Application Default Credentials unless a test gives them.

    gcloud keeps ADC in $CLOUDSDK_CONFIG: an empty folder of the test's own. google-auth decides at
    import whether to look for a Compute Engine metadata server: told not to, so that a CI runner on
    a GCP VM does not find the VM's service account.
    """
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setattr(google.auth.compute_engine._metadata, "_NO_GCE_CHECK", True)


@pytest.fixture
def key_file(service_account_key: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The key written to a file, and $GOOGLE_APPLICATION_CREDENTIALS naming it, as the README says to."""
    path = tmp_path / "keys" / "service-account.json"
    path.parent.mkdir()
    path.write_text(json.dumps(service_account_key), encoding="utf-8")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return path


@pytest.fixture
def application_default_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What `gcloud auth application-default login` leaves in the gcloud folder: a user's refresh token.

    With those, google-auth also runs `gcloud config get project` for a default project, which the
    pipeline never uses (its project is the file's): a `gcloud` that knows none answers at once, where
    the real one (if installed) takes a second per call.
    """
    path = tmp_path / "gcloud" / "application_default_credentials.json"
    path.parent.mkdir()
    user = {"type": "authorized_user", "client_id": "id.apps.googleusercontent.com", "client_secret": "s"}
    path.write_text(json.dumps({**user, "refresh_token": "r"}), encoding="utf-8")
    stub = tmp_path / "bin" / "gcloud"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ['PATH']}")
    return path


def bigquery(
    load: Load, gcp: dict[str, Any] | None = None, **settings: Any
) -> tuple[BigQueryEnvironment, Environments]:
    """The `prod` BigQuery environment of a file with `gcp:` (by default, its project) and `settings`."""
    stanza = {"adapter": "bigquery", "dataset": "analytics_prod", "threads": 4, **settings}
    document = {"gcp": {"project": "my-project"} if gcp is None else gcp, "environments": {"prod": stanza}}
    environments = load(json.dumps(document))  # JSON is YAML
    environment = environments.get("prod")
    assert isinstance(environment, BigQueryEnvironment)
    return environment, environments


class RecordingPlanner:
    """The BlockPlanner protocol, recording what the adapter plans: a unit test's stand-in for the setup's plan.

    Like the real plan, `want` may return another instance than the one given (the block as stored):
    here always a copy, so a test sees whether the adapter references what `want` returned.
    """

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.wanted: list[tuple[str, Block]] = []
        self.returned: dict[str, Block] = {}

    def want(self, name: str, desired: Block) -> Block:
        self.wanted.append((name, desired))
        stored = desired.model_copy()
        self.returned[name] = stored
        return stored


# --- setup: the project


def test_no_project_anywhere_skips_the_target_saying_where_to_set_one(load: Load) -> None:
    """Without a project the target cannot be set up yet: skipped (not failed), naming the three places."""
    environment, environments = bigquery(load, gcp={})
    with pytest.raises(TargetSkipped) as caught:
        environment.target_configs(environments)
    assert str(caught.value) == (
        "no GCP project for the bigquery environment 'prod': set gcp.project "
        "(or environments.prod.project) in the environments file, or $GOOGLE_CLOUD_PROJECT"
    )


def test_bad_project_variable_is_refused_naming_it(load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    """$GOOGLE_CLOUD_PROJECT is checked like a project written in the file: the variable, its value, the rule."""
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "My Project!")
    environment, environments = bigquery(load, gcp={})
    with pytest.raises(ConfigError) as caught:
        environment.target_configs(environments)
    assert str(caught.value) == (
        "$GOOGLE_CLOUD_PROJECT is 'My Project!', which is not a GCP project id: "
        "6 to 30 lowercase letters, digits and dashes, starting with a letter."
    )


@pytest.mark.parametrize(
    ("environment_project", "file_project", "variable", "expected"),
    [
        ("env-project", "file-project", "variable-project", "env-project"),
        (None, "file-project", "variable-project", "file-project"),
        (None, None, "variable-project", "variable-project"),
    ],
    ids=["environment-wins", "then-gcp-project", "then-the-variable"],
)
def test_project_precedence(
    load: Load,
    monkeypatch: pytest.MonkeyPatch,
    key_file: Path,
    environment_project: str | None,
    file_project: str | None,
    variable: str,
    expected: str,
) -> None:
    """environments.<env>.project, else gcp.project, else $GOOGLE_CLOUD_PROJECT: for the block and its credentials."""
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", variable)
    settings = {"project": environment_project} if environment_project else {}
    environment, environments = bigquery(load, gcp={"project": file_project} if file_project else {}, **settings)
    configs = environment.target_configs(environments)
    assert (configs.project, configs.credentials.project) == (expected, expected)


# --- setup: the block's settings


def test_optional_settings_reach_the_block_only_when_set(load: Load, key_file: Path) -> None:
    """api_endpoint and maximum_bytes_billed are left out unless set: dbt's defaults apply then."""
    environment, environments = bigquery(load)
    assert environment.target_configs(environments).extras == {
        "location": "US",
        "job_execution_timeout_seconds": 300,
        "job_retries": 1,
        "priority": "interactive",
    }
    environment, environments = bigquery(
        load,
        location="EU",
        priority="batch",
        maximum_bytes_billed=10**9,
        api_endpoint="http://127.0.0.1:9050",
        job_retries=0,
    )
    assert environment.target_configs(environments).extras == {
        "location": "EU",
        "job_execution_timeout_seconds": 300,
        "job_retries": 0,
        "priority": "batch",
        "maximum_bytes_billed": 10**9,
        "api_endpoint": "http://127.0.0.1:9050",
    }


def test_bigquery_outputs_from_block_carry_settings_and_key(
    load: Load, key_file: Path, service_account_key: dict[str, Any]
) -> None:
    """The run-time profile of a BigQuery block carries dataset, location, limits and the key's content."""
    environment, environments = bigquery(load, location="EU", maximum_bytes_billed=1000)
    outputs = profile_outputs(configs_data(environment.target_configs(environments)))
    assert outputs["method"] == "service-account-json"
    assert outputs["keyfile_json"]["private_key"] == service_account_key["private_key"]
    keys = ("type", "project", "dataset", "location", "threads", "maximum_bytes_billed")
    assert {key: outputs[key] for key in keys} == {
        "type": "bigquery", "project": "my-project", "dataset": "analytics_prod", "location": "EU", "threads": 4,
        "maximum_bytes_billed": 1000,
    }  # fmt: skip
    assert "schema" not in outputs  # dbt-bigquery's name for it is dataset


def test_local_bigquery_outputs_name_the_key_file(
    load: Load, key_file: Path, service_account_key: dict[str, Any]
) -> None:
    """For the local profiles.yml the key is referenced by path: its content is not in the output."""
    environment, environments = bigquery(load)
    outputs = profile_outputs(configs_data(environment.target_configs(environments)), keyfile=key_file)
    assert outputs["method"] == "service-account"
    assert outputs["keyfile"] == str(key_file)
    assert "keyfile_json" not in outputs
    text = yaml.safe_dump(outputs)
    assert not [part for part in secret_parts(service_account_key) if part in text]


def test_a_gs_state_store_is_read_with_the_target_s_own_key(
    load: Load, key_file: Path, service_account_key: dict[str, Any]
) -> None:
    """gcsfs gets the key's content (run time) or its file (local profile) as its token, in the target's project;
    without a key, no token: gcsfs then finds Application Default Credentials, as dbt does."""
    environment, environments = bigquery(load)
    configs = configs_data(environment.target_configs(environments))
    options = environment.state_store_options(profile_outputs(configs))
    assert options == {"project": "my-project", "token": service_account_key}
    local = environment.state_store_options(profile_outputs(configs, keyfile=key_file))
    assert local == {"project": "my-project", "token": str(key_file)}
    assert environment.state_store_options({"method": "oauth", "project": "p-123456"}) == {"project": "p-123456"}


# --- setup: the key


def test_key_file_of_the_environments_file_is_read_relative_to_it(
    load: Load, tmp_path: Path, service_account_key: dict[str, Any]
) -> None:
    """Without $GOOGLE_APPLICATION_CREDENTIALS, gcp.service_account_key_file (relative to the file) is the key."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "key.json").write_text(json.dumps(service_account_key), encoding="utf-8")
    environment, environments = bigquery(
        load, gcp={"project": "my-project", "service_account_key_file": "secrets/key.json"}
    )
    assert environments.gcp.key_path() == tmp_path / "secrets" / "key.json"
    info = environment.target_configs(environments).credentials.service_account_info
    assert info.get_secret_value()["client_email"] == CLIENT_EMAIL


def test_key_variable_wins_over_the_environments_file(load: Load, key_file: Path) -> None:
    """$GOOGLE_APPLICATION_CREDENTIALS wins: a stale gcp.service_account_key_file is not even read."""
    environment, environments = bigquery(
        load, gcp={"project": "my-project", "service_account_key_file": "gone/key.json"}
    )
    assert environments.gcp.key_path() == key_file
    info = environment.target_configs(environments).credentials.service_account_info
    assert info.get_secret_value()["client_email"] == CLIENT_EMAIL


def test_without_a_key_the_block_relies_on_application_default_credentials(
    load: Load, application_default_credentials: Path
) -> None:
    """No key: the credentials block holds no secret, and dbt authenticates by itself (oauth), token never stored."""
    environment, environments = bigquery(load)
    configs = environment.target_configs(environments)
    assert (configs.credentials.service_account_info, configs.credentials.service_account_file) == (None, None)
    data = configs_data(configs)
    assert profile_outputs(data)["method"] == "oauth"
    assert environment.check_credentials(data) == "application default credentials on project my-project"


def test_without_a_key_nor_application_default_credentials_says_both_ways(load: Load) -> None:
    """Nothing to authenticate with: refused before any block, with the variable and the gcloud command."""
    environment, environments = bigquery(load)
    with pytest.raises(CredentialsError) as caught:
        environment.target_configs(environments)
    assert str(caught.value) == (
        "No service-account key and no Application Default Credentials on this machine. "
        "Set $GOOGLE_APPLICATION_CREDENTIALS to a key file, or run `gcloud auth application-default login`."
    )


# --- setup: the blocks


def test_block_names_dependencies_first(load: Load) -> None:
    """The shared credentials block (its name from the file), the configs block, the profile: in that order.

    Known without a project: the setup lists them as skipped when the target is.
    """
    environment, environments = bigquery(load, gcp={"credentials_block": "shared-gcp"})
    assert environment.block_names(environments) == [
        "shared-gcp",
        "bigquery-target-configs-prod",
        "dbt-cli-profile-prod",
    ]


def test_plan_references_the_planned_credentials_not_a_copy_of_the_key(load: Load, key_file: Path) -> None:
    """Credentials planned first; the configs block references the credentials block the plan returned.

    So rotating the key is one block; what the profile block holds is the configs block as planned.
    """
    environment, environments = bigquery(load, gcp={"project": "my-project", "credentials_block": "shared-gcp"})
    configs = environment.target_configs(environments)
    plan = RecordingPlanner()
    planned = environment.plan_blocks(configs, plan, environments)
    assert [name for name, _ in plan.wanted] == ["shared-gcp", "bigquery-target-configs-prod"]
    assert plan.wanted[0][1] == configs.credentials
    referencing = plan.wanted[1][1]
    assert referencing.credentials is plan.returned["shared-gcp"]  # type: ignore[attr-defined]
    assert referencing.model_dump(exclude={"credentials"}) == configs.model_dump(exclude={"credentials"})
    assert planned is plan.returned["bigquery-target-configs-prod"]
    assert plan.notes == []  # a key was given


def test_plan_without_a_key_warns_once_about_expiring_user_tokens(
    load: Load, application_default_credentials: Path
) -> None:
    """ADC from a user login expire: the setup says so once, however many BigQuery targets share them."""
    stanza = {"adapter": "bigquery", "dataset": "analytics"}
    document = {"gcp": {"project": "my-project"}, "environments": {"prod": stanza, "staging": stanza}}
    environments = load(json.dumps(document))
    plan = RecordingPlanner()
    for environment in environments:
        environment.plan_blocks(environment.target_configs(environments), plan, environments)
    assert plan.notes == [ADC_WARNING]
    assert [name for name, _ in plan.wanted] == [
        "gcp-credentials",
        "bigquery-target-configs-prod",
        "gcp-credentials",
        "bigquery-target-configs-staging",
    ]


# --- run: the profile, from the block's data


@pytest.mark.parametrize(
    ("credentials", "keyfile", "expected"),
    [
        (
            {"service_account_info": {"client_email": CLIENT_EMAIL}, "project": "my-project"},
            None,
            {"method": "service-account-json", "keyfile_json": {"client_email": CLIENT_EMAIL}},
        ),
        (
            {"service_account_file": "/keys/sa.json", "project": "my-project"},
            None,
            {"method": "service-account", "keyfile": "/keys/sa.json"},
        ),
        ({"project": "my-project"}, None, {"method": "oauth"}),
        (None, None, {"method": "oauth"}),
        (
            {"service_account_info": {"client_email": CLIENT_EMAIL}, "project": "my-project"},
            Path("/home/me/key.json"),
            {"method": "service-account", "keyfile": "/home/me/key.json"},
        ),
    ],
    ids=["key-content", "key-file", "adc", "no-credentials", "local-profile-names-the-file"],
)
def test_profile_authenticates_as_the_block_says(
    credentials: dict[str, Any] | None, keyfile: Path | None, expected: dict[str, Any]
) -> None:
    """Key content, a key file, or dbt's own ADC (oauth); the local profiles.yml replaces a key by its file."""
    configs = {
        "type": "bigquery",
        "schema": "analytics_prod",
        "project": "my-project",
        "threads": 4,
        "extras": {"location": "EU"},
        "credentials": credentials,
    }
    assert profile_outputs(configs, keyfile=keyfile) == {
        "type": "bigquery",
        "project": "my-project",
        "dataset": "analytics_prod",
        "threads": 4,
        "location": "EU",
        **expected,
    }


def test_profile_takes_the_project_of_the_credentials_when_the_configs_have_none() -> None:
    """A configs block without a project (made by hand, or by prefect-dbt) runs on its credentials' project."""
    configs = {"type": "bigquery", "schema": "d", "threads": 1, "credentials": {"project": "credentials-project"}}
    assert profile_outputs(configs)["project"] == "credentials-project"


# --- doctor


def test_credentials_check_names_the_service_account_and_project(load: Load, key_file: Path) -> None:
    """The doctor builds Google's credentials from the block, as dbt will, and says whose they are."""
    environment, environments = bigquery(load)
    configs = configs_data(environment.target_configs(environments))
    assert environment.check_credentials(configs) == f"{CLIENT_EMAIL} on project my-project"


def test_credentials_check_reads_a_key_file_named_by_the_block(
    load: Load, tmp_path: Path, service_account_key: dict[str, Any]
) -> None:
    """A credentials block made by hand may name a key file rather than hold the key: it is read the same way."""
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(service_account_key), encoding="utf-8")
    environment, _ = bigquery(load)
    configs = {"type": "bigquery", "project": "my-project", "credentials": {"service_account_file": str(path)}}
    assert environment.check_credentials(configs) == f"{CLIENT_EMAIL} on project my-project"


@pytest.mark.parametrize(
    "damage",
    [
        lambda key: {**key, "private_key": UNPARSABLE_PRIVATE_KEY},
        lambda key: {**key, "private_key": key["private_key"][:400]},
        lambda key: {name: value for name, value in key.items() if name != "client_email"},
    ],
    ids=["unparsable", "truncated", "no-client-email"],
)
def test_damaged_key_fails_the_check_without_quoting_it(
    load: Load, service_account_key: dict[str, Any], damage: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """A block whose key was damaged fails the doctor's check with the fix; the message shows no key."""
    environment, _ = bigquery(load)
    key = damage(service_account_key)
    configs = {"type": "bigquery", "project": "my-project", "credentials": {"service_account_info": key}}
    with pytest.raises(CheckFailedError) as caught:
        environment.check_credentials(configs)
    assert str(caught.value).startswith("unusable GCP credentials (")
    assert caught.value.fix == "set GOOGLE_APPLICATION_CREDENTIALS and rerun the setup"
    shown = f"{caught.value} {caught.value.fix}"
    assert not [part for part in [*secret_parts(service_account_key), "PRIVATE KEY"] if part in shown]


def test_no_credentials_at_all_fails_the_check(load: Load) -> None:
    """A block without a key on a machine without ADC: the check fails, with the fix, instead of dbt later."""
    environment, _ = bigquery(load)
    with pytest.raises(CheckFailedError, match=r"^unusable GCP credentials \(DefaultCredentialsError\)$"):
        environment.check_credentials({"type": "bigquery", "project": "my-project", "credentials": {}})


# --- read_service_account_key: every way a key file can be wrong, never quoted


def write_key(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "key.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_a_good_key_is_returned_as_read(tmp_path: Path, service_account_key: dict[str, Any]) -> None:
    path = write_key(tmp_path, json.dumps(service_account_key))
    assert read_service_account_key(path) == service_account_key


def test_missing_key_file_names_both_places_to_fix(tmp_path: Path) -> None:
    """Not there: named, with the variable and the file's key that point at it; a folder: cannot be read."""
    with pytest.raises(CredentialsError) as caught:
        read_service_account_key(tmp_path / "nope.json")
    assert str(caught.value) == (
        f"Service-account key file not found: {tmp_path / 'nope.json'}. "
        "Fix $GOOGLE_APPLICATION_CREDENTIALS or gcp.service_account_key_file."
    )
    with pytest.raises(CredentialsError, match=r"Cannot read the service-account key file .* \(Is a directory\)"):
        read_service_account_key(tmp_path)


def encrypted(private_key: rsa.RSAPrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"a passphrase"),
    ).decode()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (lambda key, _: key["private_key"], "KEY is not a JSON service-account key. Download a key as JSON"),
        (lambda key, _: b"\xff\xfe" + key["private_key"].encode(), "KEY is not a JSON service-account key."),
        (lambda key, _: json.dumps([key]), "KEY is not a service-account key (missing type, project_id, "),
        (
            lambda key, _: json.dumps({n: v for n, v in key.items() if n not in ("private_key_id", "token_uri")}),
            "KEY is not a service-account key (missing private_key_id, token_uri). "
            "Create a key for the dbt service account and point $GOOGLE_APPLICATION_CREDENTIALS at it.",
        ),
        (
            lambda key, _: json.dumps({**key, "type": "external_account"}),
            "KEY is not a service-account key (type is 'external_account', not 'service_account').",
        ),
        (
            lambda key, _: json.dumps({**key, "private_key": [key["private_key"]], "private_key_id": 12}),
            "KEY is not a usable service-account key: private_key_id, private_key must be text. Create a new key.",
        ),
        (
            lambda key, _: json.dumps({**key, "private_key": UNPARSABLE_PRIVATE_KEY}),
            "The private_key in KEY does not parse as an RSA key (a damaged or edited file?). "
            "Create a new key for the service account.",
        ),
        (
            lambda key, private_key: json.dumps({**key, "private_key": encrypted(private_key)}),
            "The private_key in KEY does not parse as an RSA key",
        ),
    ],
    ids=[
        "pem-not-json",
        "not-utf8",
        "json-list",
        "missing-fields",
        "other-credential-type",
        "fields-not-text",
        "private-key-does-not-parse",
        "private-key-encrypted",
    ],
)
def test_unusable_key_file_is_refused_without_quoting_it(
    tmp_path: Path,
    service_account_key: dict[str, Any],
    private_key: rsa.RSAPrivateKey,
    content: Callable[[dict[str, Any], rsa.RSAPrivateKey], str | bytes],
    expected: str,
) -> None:
    """Each wrong key says what is wrong with it and what to do, naming the file and never showing its content."""
    path = write_key(tmp_path, content(service_account_key, private_key))
    with pytest.raises(CredentialsError) as caught:
        read_service_account_key(path)
    assert expected.replace("KEY", str(path)) in str(caught.value)
    assert not [part for part in [*secret_parts(service_account_key), "PRIVATE KEY"] if part in str(caught.value)]


def test_key_content_never_in_the_credentials_block_repr(service_account_key: dict[str, Any]) -> None:
    """The key is a secret in the block: printing the block does not show it."""
    credentials = GcpCredentials(service_account_info=service_account_key, project="my-project")
    assert service_account_key["private_key"][40:80] not in repr(credentials) + json.dumps(
        credentials.model_dump(mode="json")
    )


def test_a_run_parses_its_service_account_key_once(
    load: Load, service_account_key: dict[str, Any], private_key: rsa.RSAPrivateKey
) -> None:
    """dbt-bigquery builds Google credentials at each connection; after the run's prepare_run, those of one key
    share one signer (the key parsed once), which signs with that key, and each keeps its own token."""
    environment, _ = bigquery(load)
    outputs = {"method": "service-account-json", "keyfile_json": service_account_key, "threads": 4}
    environment.prepare_run(outputs)
    dbt_credentials = BigQueryCredentials.from_dict(
        {**outputs, "type": "bigquery", "database": "test-project", "schema": "analytics_prod"}
    )
    first, second = (create_google_credentials(dbt_credentials) for _ in range(2))
    assert isinstance(first, service_account.Credentials)
    assert isinstance(second, service_account.Credentials)
    assert first is not second
    assert first.signer is second.signer
    signature = second.sign_bytes(b"a JWT to sign")
    private_key.public_key().verify(signature, b"a JWT to sign", padding.PKCS1v15(), hashes.SHA256())

    another_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = another_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    other = create_google_credentials(
        BigQueryCredentials.from_dict(
            {**outputs, "keyfile_json": {**service_account_key, "private_key": pem}, "type": "bigquery",
             "database": "test-project", "schema": "analytics_prod"}
        )
    )  # fmt: skip
    assert isinstance(other, service_account.Credentials)
    assert other.signer is not first.signer
