"""BigQuery: production. A dataset per environment, one service account's key shared by all of them.

The key's content goes into the `gcp-credentials` block (Prefect stores it as a secret) and nowhere
else: the local profiles.yml names the key *file*; a run's profile, which may carry the key, lives in
a private temporary folder (dbt_pipeline.profiles). No message quotes a key.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from pydantic import Field, field_validator

from dbt_pipeline.adapters.base import BlockPlanner, WarehouseEnvironment
from dbt_pipeline.errors import CheckFailedError, ConfigError, CredentialsError, TargetSkipped
from dbt_pipeline.settings import (
    GCP_PROJECT_PATTERN,
    PATTERN_RULES,
    URL_PATTERN,
    Count,
    DatasetName,
    EnvironmentName,
    GcpProjectId,
    Settings,
    resolve_path,
)

if TYPE_CHECKING:
    from prefect_dbt.cli import TargetConfigs
    from prefect_gcp import GcpCredentials

    from dbt_pipeline.environments import Environments

GCP_PROJECT_VARIABLE = "GOOGLE_CLOUD_PROJECT"
KEY_FILE_VARIABLE = "GOOGLE_APPLICATION_CREDENTIALS"
# The fields google-auth needs to sign requests as a service account.
SERVICE_ACCOUNT_FIELDS = ("type", "project_id", "private_key_id", "private_key", "client_email", "token_uri")
ADC_WARNING = (
    "No service-account key given: the gcp-credentials block uses Application Default Credentials. "
    "Those come from this machine (gcloud auth application-default login) and user tokens expire "
    "(about an hour); for scheduled runs, set GOOGLE_APPLICATION_CREDENTIALS to a key file."
)


class GcpSettings(Settings):
    """Google Cloud settings shared by the BigQuery environments (the file's `gcp:` section)."""

    project: GcpProjectId | None = None
    credentials_block: EnvironmentName = "gcp-credentials"
    service_account_key_file: Path | None = Field(
        default=None, description="Service-account key; GOOGLE_APPLICATION_CREDENTIALS wins over it."
    )

    _resolve_key_file = field_validator("service_account_key_file")(resolve_path)

    def key_path(self) -> Path | None:
        """The key file to use: $GOOGLE_APPLICATION_CREDENTIALS, else gcp.service_account_key_file."""
        from_environment = os.environ.get(KEY_FILE_VARIABLE)
        return Path(from_environment).expanduser() if from_environment else self.service_account_key_file


class BigQueryEnvironment(WarehouseEnvironment):
    """A BigQuery dataset: production."""

    adapter: Literal["bigquery"]
    project: GcpProjectId | None = Field(
        default=None, description="GCP project; falls back to gcp.project, then GOOGLE_CLOUD_PROJECT."
    )
    dataset: DatasetName
    location: str = Field(default="US", min_length=2)
    job_execution_timeout_seconds: Count = 300
    job_retries: Annotated[int, Field(ge=0)] = 1
    maximum_bytes_billed: Count | None = Field(
        default=None, description="Queries that would bill more bytes fail instead of running."
    )
    priority: Literal["interactive", "batch"] = "interactive"
    table_expiration_days: Count | None = Field(
        default=None, description="Default table expiration Terraform sets on the dataset."
    )
    api_endpoint: str | None = Field(
        default=None,
        pattern=URL_PATTERN,
        description="Another BigQuery API endpoint, e.g. a local emulator in tests; unset in production.",
    )
    labels: dict[str, str] = Field(default_factory=dict)

    # --- setup

    def gcp_project(self, gcp: GcpSettings) -> str | None:
        """The environment's project, else the file's gcp.project, else $GOOGLE_CLOUD_PROJECT (checked)."""
        project = self.project or gcp.project or os.environ.get(GCP_PROJECT_VARIABLE)
        if project and not re.fullmatch(GCP_PROJECT_PATTERN, project):
            msg = f"${GCP_PROJECT_VARIABLE} is {project!r}, which is not {PATTERN_RULES[GCP_PROJECT_PATTERN]}."
            raise ConfigError(msg)
        return project or None

    def target_configs(self, environments: Environments) -> TargetConfigs:
        from dbt_pipeline.profile_blocks import BigQueryTargetConfigs

        project = self.gcp_project(environments.gcp)
        if project is None:
            msg = (
                f"no GCP project for the bigquery environment {self.name!r}: set gcp.project "
                f"(or environments.{self.name}.project) in the environments file, or ${GCP_PROJECT_VARIABLE}"
            )
            raise TargetSkipped(msg)
        extras: dict[str, Any] = {
            "location": self.location,
            "job_execution_timeout_seconds": self.job_execution_timeout_seconds,
            "job_retries": self.job_retries,
            "priority": self.priority,
        }
        if self.maximum_bytes_billed is not None:
            extras["maximum_bytes_billed"] = self.maximum_bytes_billed
        if self.api_endpoint is not None:
            extras["api_endpoint"] = self.api_endpoint
        return BigQueryTargetConfigs(
            schema=self.dataset,
            project=project,
            threads=self.threads,
            credentials=gcp_credentials(environments.gcp, project),
            extras=extras,
        )

    def block_names(self, environments: Environments) -> list[str]:
        return [environments.gcp.credentials_block, self._configs_block_name, self.profile_block_name]

    def plan_blocks(self, configs: TargetConfigs, plan: BlockPlanner, environments: Environments) -> TargetConfigs:
        """The shared credentials block, then `bigquery-target-configs-{env}` referencing it (not a copy of the key)."""
        if environments.gcp.key_path() is None and ADC_WARNING not in plan.notes:
            plan.notes.append(ADC_WARNING)
        credentials = plan.want(environments.gcp.credentials_block, configs.credentials)
        referencing = configs.model_copy(update={"credentials": credentials})
        return cast("TargetConfigs", plan.want(self._configs_block_name, referencing))

    @property
    def _configs_block_name(self) -> str:
        return f"bigquery-target-configs-{self.name}"

    # --- run

    @staticmethod
    def profile_outputs(configs: Mapping[str, Any], *, keyfile: Path | None = None) -> dict[str, Any]:
        """dbt-bigquery's output, authenticating as the block's credentials say.

        Without a key, dbt authenticates with Application Default Credentials itself (`method: oauth`)
        rather than with a token baked into the profile, as prefect-dbt does, which would expire
        within the hour.
        """
        credentials = configs.get("credentials") or {}
        outputs: dict[str, Any] = {
            "type": configs["type"],
            "project": configs.get("project") or credentials.get("project"),
            "dataset": configs.get("schema", configs.get("schema_")),
            "threads": configs["threads"],
            **(configs.get("extras") or {}),
        }
        if keyfile is not None:
            outputs.update(method="service-account", keyfile=str(keyfile))
        elif credentials.get("service_account_info"):
            outputs.update(method="service-account-json", keyfile_json=dict(credentials["service_account_info"]))
        elif credentials.get("service_account_file"):
            outputs.update(method="service-account", keyfile=str(credentials["service_account_file"]))
        else:
            outputs["method"] = "oauth"
        return outputs

    def prepare_run(self, outputs: Mapping[str, Any]) -> None:
        """With a service account's key, the run's process parses it once (`parse_each_key_once`)."""
        if outputs.get("method") in ("service-account", "service-account-json"):
            parse_each_key_once()

    # --- doctor

    def state_store_options(self, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """A gs:// state store is read with the target's own credentials (gcsfs's `token`), in its project.

        Without a key (dbt's `oauth`), gcsfs finds Application Default Credentials itself, as dbt does.
        """
        token = outputs.get("keyfile_json") or outputs.get("keyfile")
        return {"project": outputs.get("project"), **({"token": token} if token else {})}

    def check_credentials(self, configs: Mapping[str, Any]) -> str:
        """Build Google's credentials from the block as dbt-bigquery will; say whose they are."""
        import google.auth
        from google.oauth2 import service_account

        credentials = configs.get("credentials") or {}
        try:
            if credentials.get("service_account_info"):
                google_credentials: Any = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                    dict(credentials["service_account_info"])
                )
            elif credentials.get("service_account_file"):
                google_credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    str(credentials["service_account_file"])
                )
            else:
                google_credentials, _ = google.auth.default()
        except Exception as error:  # a damaged key, no ADC: never quote the key
            raise CheckFailedError(
                f"unusable GCP credentials ({type(error).__name__})",
                "set GOOGLE_APPLICATION_CREDENTIALS and rerun the setup",
            ) from None
        email = getattr(google_credentials, "service_account_email", "application default credentials")
        return f"{email} on project {configs.get('project') or credentials.get('project')}"


def parse_each_key_once() -> None:
    """Make google-auth parse each service-account key once in this process, rather than at each connection.

    dbt-bigquery builds new Google credentials each time it opens a connection, about once per node, and
    google-auth then parses the key again: 50 ms of CPU each here (cryptography checks the RSA key), 100 CPU-s
    of a test session's BigQuery runs. The signer it makes of a key holds the parsed key and nothing that
    changes, and signs from any thread, so one per key is shared. Idempotent.
    """
    from google.auth.crypt import RSASigner

    if not hasattr(RSASigner.from_string, "cache_info"):
        RSASigner.from_string = staticmethod(functools.lru_cache(maxsize=8)(RSASigner.from_string))  # type: ignore[method-assign]


def read_service_account_key(path: Path) -> dict[str, Any]:
    """Read and check a service-account key file; the message never quotes the file's content."""
    import google.auth.crypt

    if not path.exists():
        msg = f"Service-account key file not found: {path}. Fix ${KEY_FILE_VARIABLE} or gcp.service_account_key_file."
        raise CredentialsError(msg)
    try:
        key = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:  # a file this user may not read, a folder
        msg = f"Cannot read the service-account key file {path} ({error.strerror}). Fix its permissions or the path."
        raise CredentialsError(msg) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        msg = (
            f"{path} is not a JSON service-account key. "
            "Download a key as JSON from the Google Cloud console (IAM > Service accounts > Keys)."
        )
        raise CredentialsError(msg) from None
    missing = [name for name in SERVICE_ACCOUNT_FIELDS if not (isinstance(key, dict) and key.get(name))]
    if missing or key.get("type") != "service_account":
        detail = f"missing {', '.join(missing)}" if missing else f"type is {key.get('type')!r}, not 'service_account'"
        msg = (
            f"{path} is not a service-account key ({detail}). "
            f"Create a key for the dbt service account and point ${KEY_FILE_VARIABLE} at it."
        )
        raise CredentialsError(msg)
    not_text = [name for name in SERVICE_ACCOUNT_FIELDS if not isinstance(key[name], str)]
    if not_text:
        msg = f"{path} is not a usable service-account key: {', '.join(not_text)} must be text. Create a new key."
        raise CredentialsError(msg)
    try:
        google.auth.crypt.RSASigner.from_service_account_info(key)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):  # TypeError: an encrypted private key, which cryptography wants a password for
        msg = (
            f"The private_key in {path} does not parse as an RSA key (a damaged or edited file?). "
            "Create a new key for the service account."
        )
        raise CredentialsError(msg) from None
    return cast(dict[str, Any], key)


def gcp_credentials(settings: GcpSettings, project: str) -> GcpCredentials:
    """The `GcpCredentials` block content for `project`: the checked key, else Application Default Credentials."""
    import google.auth.exceptions
    from prefect_gcp import GcpCredentials

    key_path = settings.key_path()
    try:
        if key_path is not None:
            return GcpCredentials(service_account_info=read_service_account_key(key_path), project=project)
        return GcpCredentials(project=project)
    except google.auth.exceptions.DefaultCredentialsError:
        msg = (
            "No service-account key and no Application Default Credentials on this machine. "
            f"Set ${KEY_FILE_VARIABLE} to a key file, or run `gcloud auth application-default login`."
        )
        raise CredentialsError(msg) from None
    except ValueError as error:
        # google-auth rejects a key whose private key does not parse; say so without quoting it.
        msg = f"The service-account key in {key_path} is unusable: {type(error).__name__}. Create a new key."
        raise CredentialsError(msg) from None
