"""The adapter registry: each module of dbt_pipeline/adapters is found, its class registered under its `adapter:`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import dbt_pipeline
from dbt_pipeline.adapters import ADAPTERS, WarehouseEnvironment, adapter_class
from dbt_pipeline.adapters.bigquery import BigQueryEnvironment
from dbt_pipeline.adapters.duckdb import DuckDBEnvironment
from dbt_pipeline.adapters.postgres import PostgresEnvironment
from dbt_pipeline.environments import Environments
from dbt_pipeline.errors import ConfigError
from dbt_pipeline.profiles import profile_outputs

Load = Callable[[str], Environments]


def test_registry_holds_the_three_adapters_in_name_order() -> None:
    """bigquery, duckdb, postgres: each adapter's class under the `adapter:` value users write, sorted by name."""
    assert list(ADAPTERS.items()) == [
        ("bigquery", BigQueryEnvironment),
        ("duckdb", DuckDBEnvironment),
        ("postgres", PostgresEnvironment),
    ]


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_every_adapter_implements_the_interface(adapter: str) -> None:
    """A registered class can be instantiated: no abstract method of WarehouseEnvironment left out."""
    environment_class = adapter_class(adapter)
    assert issubclass(environment_class, WarehouseEnvironment)
    assert environment_class.__abstractmethods__ == frozenset()


def test_unknown_adapter_names_the_known_ones() -> None:
    """A block or a profile of an adapter this pipeline lacks: refused, with the ones it has."""
    with pytest.raises(ConfigError) as caught:
        adapter_class("snowflake")
    assert str(caught.value) == "No adapter 'snowflake' in this pipeline: use bigquery, duckdb or postgres."
    with pytest.raises(ConfigError, match=r"^No adapter 'snowflake' in this pipeline"):
        profile_outputs({"type": "snowflake", "schema": "s", "threads": 1})


@pytest.mark.parametrize(
    ("stanza", "expected"),
    [
        ("{adapter: snowflake, path: a.db}", "environments.dev.adapter: unknown adapter 'snowflake'; use "),
        ("{path: a.db}", "environments.dev: missing 'adapter'; use "),
    ],
    ids=["unknown", "missing"],
)
def test_environments_file_lists_the_registered_adapters(load: Load, stanza: str, expected: str) -> None:
    """An environment of an unknown adapter, or of none, is refused with the list of adapters, in words."""
    with pytest.raises(ConfigError) as caught:
        load(f"environments:\n  dev: {stanza}\n")
    assert f"  - {expected}bigquery, duckdb or postgres." in str(caught.value).splitlines()


@pytest.mark.parametrize(
    ("adapter", "settings", "typo", "expected"),
    [
        ("postgres", "user: u, database: d", "pasword_env_var", "password_env_var"),
        ("bigquery", "dataset: d", "maximum_bytes_biled", "maximum_bytes_billed"),
        ("duckdb", "path: a.db", "shema", "schema"),
    ],
)
def test_a_typo_is_matched_against_the_keys_of_the_environments_adapter(
    load: Load, adapter: str, settings: str, typo: str, expected: str
) -> None:
    """The keys offered for a misspelt one are those of the environment's own adapter."""
    with pytest.raises(ConfigError) as caught:
        load(f"environments:\n  dev: {{adapter: {adapter}, {settings}, {typo}: 1}}\n")
    message = str(caught.value)
    assert f"environments.dev.{typo}: unknown key (did you mean '{expected}'?)" in message
    allowed = message.split("Allowed here: ", 1)[1].rstrip(".").split(", ")
    assert expected in allowed
    assert "adapter" in allowed
    others = {"postgres": "password_env_var", "bigquery": "dataset", "duckdb": "path"}
    assert not [key for name, key in others.items() if name != adapter and key in allowed]


SNOWFLAKE = '''
"""A warehouse added by a test: what the README's "Adding an adapter" asks for, and no more."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from dbt_pipeline.adapters.base import WarehouseEnvironment


class SnowflakeEnvironment(WarehouseEnvironment):
    adapter: Literal["snowflake"]
    account: str

    def target_configs(self, environments: Any) -> Any:
        from prefect_dbt.cli import TargetConfigs

        return TargetConfigs(type="snowflake", schema="s", threads=self.threads, extras={"account": self.account})

    def check_credentials(self, configs: Mapping[str, Any]) -> str:
        return f"account {self.account}"
'''

PROBE = """
import json, sys
from pathlib import Path
import dbt_pipeline
from dbt_pipeline.adapters import ADAPTERS, adapter_class
from dbt_pipeline.environments import load_environments
from dbt_pipeline.errors import ConfigError
from dbt_pipeline.profiles import profile_outputs

environments = load_environments(Path(sys.argv[1]))
environment = environments.get("warehouse")
try:
    load_environments(Path(sys.argv[2]))
    refused = None
except ConfigError as error:
    refused = str(error)
print(json.dumps({
    "package": dbt_pipeline.__file__,
    "adapters": list(ADAPTERS),
    "class": type(environment).__name__,
    "class_found": adapter_class("snowflake").__name__,
    "module": type(environment).__module__,
    "blocks": environment.block_names(environments),
    "secrets": environment.run_secrets(),
    "outputs": profile_outputs({"type": "snowflake", "schema": "s", "threads": 2, "extras": {"account": "a"}}),
    "refused": refused,
}))
"""


def test_a_new_adapter_module_is_found_with_no_other_change(tmp_path: Path) -> None:
    """A module dropped into dbt_pipeline/adapters is an adapter: the file accepts it, every list names it.

    On a copy of the package, in a process of its own: this process's registry is left as it is.
    """
    package = Path(dbt_pipeline.__file__).parent
    copy = tmp_path / "src" / "dbt_pipeline"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "adapters" / "snowflake.py").write_text(textwrap.dedent(SNOWFLAKE), encoding="utf-8")
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("environments:\n  warehouse: {adapter: snowflake, account: acme, threads: 2}\n", encoding="utf-8")
    bad.write_text("environments:\n  warehouse: {adapter: redshift}\n", encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(good), str(bad)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(copy.parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert Path(found["package"]).parent == copy  # the copy, not this checkout
    assert found["module"] == "dbt_pipeline.adapters.snowflake"
    assert found["adapters"] == ["bigquery", "duckdb", "postgres", "snowflake"]
    assert (found["class"], found["class_found"]) == ("SnowflakeEnvironment", "SnowflakeEnvironment")
    # What the base class gives an adapter that overrides nothing more.
    assert found["blocks"] == ["dbt-cli-profile-warehouse"]
    assert found["secrets"] == {}
    assert found["outputs"] == {"type": "snowflake", "schema": "s", "threads": 2, "account": "a"}
    assert "unknown adapter 'redshift'; use bigquery, duckdb, postgres or snowflake." in found["refused"]
    assert "snowflake" not in ADAPTERS
