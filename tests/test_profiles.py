"""The profiles.yml document, the private profiles dir of a run, and the key kept out of reprs.

Each adapter's own profile (its outputs) is tested with the adapter, in tests/adapters/.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prefect_gcp import GcpCredentials

from dbt_pipeline.profiles import exported, profiles_document


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


def test_profile_uses_the_projects_profile_name() -> None:
    """The document is keyed by the profile the dbt project asks for, with the target as default."""
    document = profiles_document("jaffle", "dev", {"type": "duckdb"})
    assert document == {"jaffle": {"target": "dev", "outputs": {"dev": {"type": "duckdb"}}}}


def test_exported_secrets_last_for_the_block_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's secrets are in the environment while dbt runs, then gone (or as they were), even if dbt crashes."""
    monkeypatch.setenv("DBT_ENV_SECRET_KEPT", "before")
    monkeypatch.delenv("DBT_ENV_SECRET_ADDED", raising=False)
    seen: list[tuple[str, str]] = []

    def crash_inside() -> None:
        with exported({"DBT_ENV_SECRET_KEPT": "during", "DBT_ENV_SECRET_ADDED": "new"}):
            seen.append((os.environ["DBT_ENV_SECRET_KEPT"], os.environ["DBT_ENV_SECRET_ADDED"]))
            raise RuntimeError("dbt crashed")

    with pytest.raises(RuntimeError):
        crash_inside()
    assert seen == [("during", "new")]
    assert os.environ["DBT_ENV_SECRET_KEPT"] == "before"
    assert "DBT_ENV_SECRET_ADDED" not in os.environ


def test_key_content_never_in_repr(service_account_key: dict[str, Any]) -> None:
    """The key is a secret in the block: printing the block does not show it."""
    credentials = GcpCredentials(service_account_info=service_account_key, project="my-project")
    assert service_account_key["private_key"][40:80] not in repr(credentials) + json.dumps(
        credentials.model_dump(mode="json")
    )
