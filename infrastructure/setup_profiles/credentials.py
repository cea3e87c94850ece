"""Google credentials for the `gcp-credentials` block: a checked service-account key, or ADC.

The key's content goes into the block (Prefect stores it as a secret) and nowhere else: it is
never printed, logged or written to a file by the setup.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

import google.auth.crypt
import google.auth.exceptions
from prefect_gcp import GcpCredentials

from dbt_pipeline.environments import GcpSettings
from dbt_pipeline.errors import CredentialsError

KEY_FILE_VARIABLE = "GOOGLE_APPLICATION_CREDENTIALS"
# The fields google-auth needs to sign requests as a service account.
SERVICE_ACCOUNT_FIELDS = ("type", "project_id", "private_key_id", "private_key", "client_email", "token_uri")
ADC_WARNING = (
    "No service-account key given: the gcp-credentials block uses Application Default Credentials. "
    "Those come from this machine (gcloud auth application-default login) and user tokens expire "
    "(about an hour); for scheduled runs, set GOOGLE_APPLICATION_CREDENTIALS to a key file."
)


def service_account_key_path(settings: GcpSettings) -> Path | None:
    """The key file to use: $GOOGLE_APPLICATION_CREDENTIALS, else gcp.service_account_key_file."""
    from_environment = os.environ.get(KEY_FILE_VARIABLE)
    return Path(from_environment).expanduser() if from_environment else settings.service_account_key_file


def read_service_account_key(path: Path) -> dict[str, Any]:
    """Read and check a service-account key file; the message never quotes the file's content."""
    if not path.is_file():
        msg = f"Service-account key file not found: {path}. Fix ${KEY_FILE_VARIABLE} or gcp.service_account_key_file."
        raise CredentialsError(msg)
    try:
        key = json.loads(path.read_text(encoding="utf-8"))
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
    except ValueError:
        msg = (
            f"The private_key in {path} does not parse as an RSA key (a damaged or edited file?). "
            "Create a new key for the service account."
        )
        raise CredentialsError(msg) from None
    return cast(dict[str, Any], key)


def gcp_credentials(settings: GcpSettings, project: str) -> GcpCredentials:
    """The `GcpCredentials` block content for `project`."""
    key_path = service_account_key_path(settings)
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
