"""Helpers of the adapter tests: an environments file written and loaded as a user's would be."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dbt_pipeline.environments import Environments, load_environments

LoadEnvironments = Callable[[str], Environments]


@pytest.fixture
def load(tmp_path: Path) -> LoadEnvironments:
    """Write `text` as `tmp_path/environments.yaml` and load it (relative paths resolve next to it)."""

    def load(text: str) -> Environments:
        path = tmp_path / "environments.yaml"
        path.write_text(text, encoding="utf-8")
        return load_environments(path)

    return load
