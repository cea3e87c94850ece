"""The profiles.yml document and the secrets exported for a run.

Each adapter's own profile (its outputs) is tested with the adapter, in tests/adapters/.
"""

from __future__ import annotations

import os

import pytest

from dbt_pipeline.profiles import exported, profiles_document


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
