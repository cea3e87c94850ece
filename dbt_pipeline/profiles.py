"""dbt profiles: from an environment to prefect-dbt target configs, and from those to profiles.yml.

One path serves the setup and the flow. The setup turns each environment into the target configs it
stores in Prefect blocks and renders the local `dbt/profiles.yml` from the same objects; the flow
renders the profile from the block it loads. What a run uses is therefore what the setup stored.

Secrets never reach a file that outlives a run: the local profiles.yml names a key *file*, and the
profile rendered for a run (which may carry the key's content) lives in a private temporary
directory, readable by the owner only, removed when the run ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias, cast

import yaml
from prefect_gcp import GcpCredentials

from dbt_pipeline.environments import BigQueryEnvironment, DuckDBEnvironment

# The seed's contract names prefect-dbt's `DbtCliProfile` blocks, which live in `prefect_dbt.cli`;
# importing it warns that the module is deprecated in favour of prefect_dbt.core, which has no block
# for a profile. The blocks are what our users load by name, so we keep them and silence the warning.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="prefect_dbt.cli is deprecated", category=UserWarning)
    from prefect_dbt.cli import BigQueryTargetConfigs, DbtCliProfile, TargetConfigs

__all__ = [
    "AnyTargetConfigs",
    "BigQueryTargetConfigs",
    "DbtCliProfile",
    "TargetConfigs",
    "ensure_database_dir",
    "private_profiles_dir",
    "profile_outputs",
    "profiles_document",
    "target_configs_for",
    "write_private_file",
]

AnyTargetConfigs: TypeAlias = TargetConfigs | BigQueryTargetConfigs


def target_configs_for(
    environment: DuckDBEnvironment | BigQueryEnvironment,
    *,
    project: str | None = None,
    credentials: GcpCredentials | None = None,
) -> AnyTargetConfigs:
    """The prefect-dbt target configs that describe `environment` (credentials for BigQuery)."""
    if isinstance(environment, DuckDBEnvironment):
        return TargetConfigs(
            type="duckdb",
            schema=environment.schema_,
            threads=environment.threads,
            extras={"path": str(environment.path)},
        )
    extras: dict[str, Any] = {
        "location": environment.location,
        "job_execution_timeout_seconds": environment.job_execution_timeout_seconds,
        "job_retries": environment.job_retries,
        "priority": environment.priority,
    }
    if environment.maximum_bytes_billed is not None:
        extras["maximum_bytes_billed"] = environment.maximum_bytes_billed
    if environment.api_endpoint is not None:
        extras["api_endpoint"] = environment.api_endpoint
    return BigQueryTargetConfigs(
        schema=environment.dataset,
        project=environment.project or project,
        threads=environment.threads,
        credentials=credentials,
        extras=extras,
    )


def profile_outputs(configs: AnyTargetConfigs, *, keyfile: Path | None = None) -> dict[str, Any]:
    """The `outputs.<target>` mapping of profiles.yml for these target configs.

    For BigQuery, `keyfile` replaces the key content stored in the block by a path to it, so the
    local profiles.yml never holds a secret. Without a key, dbt authenticates with Application
    Default Credentials itself (`method: oauth`) rather than with a token baked into the file, as
    prefect-dbt does, which would expire within the hour.
    """
    if not isinstance(configs, BigQueryTargetConfigs):
        return cast(dict[str, Any], configs.get_configs())
    outputs: dict[str, Any] = {
        "type": "bigquery",
        "project": configs.project or configs.credentials.project,
        "dataset": configs.schema_,
        "threads": configs.threads,
        **(configs.extras or {}),
    }
    credentials = configs.credentials
    if keyfile is not None:
        outputs.update(method="service-account", keyfile=str(keyfile))
    elif credentials.service_account_info is not None:
        outputs.update(method="service-account-json", keyfile_json=credentials.service_account_info.get_secret_value())
    elif credentials.service_account_file is not None:
        outputs.update(method="service-account", keyfile=str(credentials.service_account_file))
    else:
        outputs["method"] = "oauth"
    return outputs


def ensure_database_dir(outputs: dict[str, Any]) -> None:
    """Create the folder of a DuckDB file: DuckDB creates the file on first use, not its folder."""
    if outputs.get("type") == "duckdb" and outputs.get("path") not in (None, ":memory:"):
        Path(outputs["path"]).expanduser().parent.mkdir(parents=True, exist_ok=True)


def profiles_document(profile_name: str, target: str, outputs: dict[str, Any]) -> dict[str, Any]:
    """A profiles.yml document holding one profile with one target, the default one."""
    return {profile_name: {"target": target, "outputs": {target: outputs}}}


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, atomically (never a half-written file)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def private_profiles_dir(document: dict[str, Any]) -> Iterator[Path]:
    """A temporary profiles dir (0700, profiles.yml 0600) that is removed however the block exits."""
    directory = Path(tempfile.mkdtemp(prefix="dbt-profiles-"))
    try:
        write_private_file(directory / "profiles.yml", yaml.safe_dump(document, sort_keys=False))
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
