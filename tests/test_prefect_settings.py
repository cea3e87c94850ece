"""The repository's Prefect settings, given to the commands wherever they start (dbt_pipeline.prefect_settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.settings import Settings

from dbt_pipeline.prefect_settings import (
    REPOSITORY_PYPROJECT,
    repository_prefect_settings,
    use_repository_prefect_settings,
)
from tests.conftest import REPO


def test_the_commands_get_the_repositorys_prefect_settings_as_prefect_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started outside the repository, where Prefect does not read its pyproject.toml, a command sees what the
    file's `[tool.prefect]` says, from the variables: names and values Prefect knows."""
    assert REPOSITORY_PYPROJECT == REPO / "pyproject.toml"
    monkeypatch.chdir(tmp_path)
    for name in repository_prefect_settings():
        monkeypatch.delenv(name, raising=False)
    assert Settings().server.ephemeral.startup_timeout_seconds == 20, "Prefect's default, outside the repository"
    environment: dict[str, str] = {}
    use_repository_prefect_settings(environment)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.server.analytics_enabled is False
    assert settings.server.ephemeral.startup_timeout_seconds == 180


def test_a_setting_the_environment_holds_already_wins() -> None:
    environment = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600"}
    use_repository_prefect_settings(environment)
    assert environment["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "600"
    assert environment["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_nested_tables_booleans_and_numbers_become_prefects_variables(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\n[tool.prefect]\nprofiles_path = "p.toml"\n'
        "[tool.prefect.logging]\nlevel = 'DEBUG'\n[tool.prefect.server.ephemeral]\nenabled = true\n"
        "startup_timeout_seconds = 45\n[tool.ruff]\nline-length = 120\n",
        encoding="utf-8",
    )
    assert repository_prefect_settings(pyproject) == {
        "PREFECT_PROFILES_PATH": "p.toml",
        "PREFECT_LOGGING_LEVEL": "DEBUG",
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "true",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "45",
    }


def test_a_project_installed_without_its_pyproject_has_no_settings_to_give(tmp_path: Path) -> None:
    assert repository_prefect_settings(tmp_path / "pyproject.toml") == {}
    assert repository_prefect_settings(_without_prefect_table(tmp_path)) == {}


def _without_prefect_table(folder: Path) -> Path:
    pyproject = folder / "other.toml"
    pyproject.write_text('[project]\nname = "x"\n', encoding="utf-8")
    return pyproject
