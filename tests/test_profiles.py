"""Rendering dbt profiles from environments and blocks, per adapter, and the private profiles dir."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prefect_gcp import GcpCredentials

from dbt_pipeline.environments import BigQueryEnvironment, DuckDBEnvironment
from dbt_pipeline.profile_blocks import configs_data, target_configs_for
from dbt_pipeline.profiles import private_profiles_dir, profile_outputs, profiles_document


@pytest.fixture(scope="module")
def service_account_key() -> dict[str, Any]:
    """A well-formed service-account key with a freshly generated RSA key (Google's endpoints are never called)."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": "dbt@test-project.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "http://127.0.0.1:9/token",
    }


def bigquery_environment(**overrides: Any) -> BigQueryEnvironment:
    settings = {
        "name": "prod",
        "adapter": "bigquery",
        "dataset": "analytics_prod",
        "dbt_project_dir": "/p",
        "threads": 4,
    }
    return BigQueryEnvironment.model_validate({**settings, **overrides})


def test_duckdb_outputs() -> None:
    """A DuckDB environment renders type, path, schema and threads."""
    environment = DuckDBEnvironment.model_validate(
        {"name": "dev", "adapter": "duckdb", "path": "/data/dev.duckdb", "dbt_project_dir": "/p", "threads": 1}
    )
    outputs = profile_outputs(configs_data(target_configs_for(environment)))
    assert outputs == {"type": "duckdb", "path": "/data/dev.duckdb", "schema": "main", "threads": 1}


def test_bigquery_outputs_from_block_carry_settings_and_key(service_account_key: dict[str, Any]) -> None:
    """The run-time profile of a BigQuery block carries dataset, location, limits and the key's content."""
    credentials = GcpCredentials(service_account_info=service_account_key, project="my-project")
    configs = target_configs_for(
        bigquery_environment(location="EU", maximum_bytes_billed=1000), project="my-project", credentials=credentials
    )
    outputs = profile_outputs(configs_data(configs))
    assert outputs["method"] == "service-account-json"
    assert outputs["keyfile_json"]["private_key"] == service_account_key["private_key"]
    keys = ("type", "project", "dataset", "location", "threads", "maximum_bytes_billed")
    assert {key: outputs[key] for key in keys} == {
        "type": "bigquery", "project": "my-project", "dataset": "analytics_prod", "location": "EU", "threads": 4,
        "maximum_bytes_billed": 1000,
    }  # fmt: skip


def test_local_bigquery_outputs_name_the_key_file(service_account_key: dict[str, Any], tmp_path: Path) -> None:
    """For the local profiles.yml the key is referenced by path: its content is not in the output."""
    credentials = GcpCredentials(service_account_info=service_account_key, project="my-project")
    configs = target_configs_for(bigquery_environment(), project="my-project", credentials=credentials)
    outputs = profile_outputs(configs_data(configs), keyfile=tmp_path / "key.json")
    assert outputs["method"] == "service-account"
    assert outputs["keyfile"] == str(tmp_path / "key.json")
    assert service_account_key["private_key"] not in yaml.safe_dump(outputs)


def test_profile_uses_the_projects_profile_name() -> None:
    """The document is keyed by the profile the dbt project asks for, with the target as default."""
    document = profiles_document("jaffle", "dev", {"type": "duckdb"})
    assert document == {"jaffle": {"target": "dev", "outputs": {"dev": {"type": "duckdb"}}}}


def test_private_profiles_dir_is_owner_only_and_removed() -> None:
    """The rendered profile lives in a 0700 dir as a 0600 file, and is gone after the block, even on error."""
    seen: list[tuple[Path, int, int, object]] = []

    def crash_inside() -> None:
        with private_profiles_dir({"p": {"target": "dev"}}) as directory:
            profiles = directory / "profiles.yml"
            modes = stat.S_IMODE(directory.stat().st_mode), stat.S_IMODE(profiles.stat().st_mode)
            seen.append((directory, *modes, yaml.safe_load(profiles.read_text())))
            raise RuntimeError("dbt crashed")

    with pytest.raises(RuntimeError):
        crash_inside()
    ((directory, directory_mode, file_mode, document),) = seen
    assert (directory_mode, file_mode, document) == (0o700, 0o600, {"p": {"target": "dev"}})
    assert not directory.exists()


def test_key_content_never_in_repr(service_account_key: dict[str, Any]) -> None:
    """The key is a secret in the block: printing the block does not show it."""
    credentials = GcpCredentials(service_account_info=service_account_key, project="my-project")
    assert service_account_key["private_key"][40:80] not in repr(credentials) + json.dumps(
        credentials.model_dump(mode="json")
    )
