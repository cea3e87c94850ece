"""Building blocks of the environments file's settings: strict models, checked names, anchored paths.

Shared by the file's own sections (dbt_pipeline.environments) and by each adapter's settings
(dbt_pipeline.adapters), so a rule such as "a block name is lowercase with dashes" is said once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo

# Prefect block names allow lowercase letters, digits and dashes; an environment name becomes part
# of block names (dbt-cli-profile-{env}), of file names and of a command line, so nothing else.
ENVIRONMENT_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
EnvironmentName = Annotated[str, Field(pattern=ENVIRONMENT_NAME_PATTERN)]

# https://cloud.google.com/bigquery/docs/datasets#dataset-naming
DATASET_PATTERN = r"^[A-Za-z0-9_]{1,1024}$"
DatasetName = Annotated[str, Field(pattern=DATASET_PATTERN)]
# https://cloud.google.com/resource-manager/docs/creating-managing-projects#before_you_begin
GCP_PROJECT_PATTERN = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"
GcpProjectId = Annotated[str, Field(pattern=GCP_PROJECT_PATTERN)]
URL_PATTERN = r"^https?://"
# A notification block: a Slack webhook block's name, or `<block type slug>/<name>`.
NOTIFICATION_BLOCK_PATTERN = r"^([a-z0-9-]+/)?[a-z0-9][a-z0-9-]*$"
SECRET_VARIABLE_PATTERN = r"^DBT_ENV_SECRET_[A-Z0-9_]+$"  # noqa: S105 - a name pattern, not a password
# A whole number, not a boolean or a string that looks like one (YAML's `true` is not 1 thread).
Count = Annotated[int, Field(strict=True, gt=0)]

# How a run executes the project's nodes: `steps`, the seed's dbt commands one after the other (seed,
# snapshot, run, then test), or `build`, one `dbt build` (each model's tests right after it, so a
# failure skips only what depends on it).
RunMode = Literal["steps", "build"]
# What a run does when the source freshness step finds sources past their `error_after`: say so, leave
# out what is built on them, or fail before building anything.
OnStaleSource = Literal["warn", "skip", "fail"]

# What each pattern means, in words, for error messages.
PATTERN_RULES = {
    ENVIRONMENT_NAME_PATTERN: (
        "use lowercase letters, digits and dashes, starting with a letter (it becomes part of block names)"
    ),
    DATASET_PATTERN: "a BigQuery dataset name: letters, digits and underscores only",
    GCP_PROJECT_PATTERN: "a GCP project id: 6 to 30 lowercase letters, digits and dashes, starting with a letter",
    URL_PATTERN: "a URL starting with http:// or https://",
    NOTIFICATION_BLOCK_PATTERN: (
        "a block name (lowercase letters, digits and dashes), optionally prefixed by its block type slug and /"
    ),
    SECRET_VARIABLE_PATTERN: "a variable name starting with DBT_ENV_SECRET_ (dbt scrubs those from its logs)",
}


class Settings(BaseModel):
    """Strict and immutable: an unknown key is an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def resolve_path(value: Path | None, info: ValidationInfo) -> Path | None:
    """Anchor a relative path at the environments file's directory (passed as context)."""
    if value is None or value.is_absolute():
        return value
    base_dir = (info.context or {}).get("base_dir", Path.cwd())
    return (Path(base_dir) / value).resolve()
