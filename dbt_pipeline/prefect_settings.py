"""The repository's Prefect settings for every command, wherever it is started from.

Prefect reads `[tool.prefect]` from the pyproject.toml of the current directory only. A command started
elsewhere (`python ../prefect_flows/pipeline.py` from dbt/, a cron job in its home directory) ran with
Prefect's defaults instead: a 20 s start-up window for the temporary server, which a busy machine misses,
and telemetry that logs an ERROR at each start on a machine offline.

So each command sets those settings as environment variables before it imports Prefect, from the
repository's own pyproject.toml. A variable already set wins, as it would over the file. This module
imports the standard library only: it runs before anything else.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

REPOSITORY_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def use_repository_prefect_settings(
    environ: MutableMapping[str, str] = os.environ, pyproject: Path = REPOSITORY_PYPROJECT
) -> None:
    """Set each of the repository's Prefect settings that the environment does not set already."""
    for name, value in repository_prefect_settings(pyproject).items():
        environ.setdefault(name, value)


def repository_prefect_settings(pyproject: Path = REPOSITORY_PYPROJECT) -> dict[str, str]:
    """`[tool.prefect]` as Prefect's environment variables (`[tool.prefect.server] analytics_enabled = false`
    is PREFECT_SERVER_ANALYTICS_ENABLED=false); none when the project is installed without its pyproject.toml."""
    try:
        with pyproject.open("rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        return {}
    return dict(_variables(("PREFECT",), document.get("tool", {}).get("prefect", {})))


def _variables(prefix: tuple[str, ...], table: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for key, value in table.items():
        name = (*prefix, key.upper())
        if isinstance(value, Mapping):
            yield from _variables(name, value)
        elif isinstance(value, bool):
            yield "_".join(name), str(value).lower()
        else:
            yield "_".join(name), str(value)
