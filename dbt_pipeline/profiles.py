"""dbt profiles: from target configs (block data) to profiles.yml, on disk or for one run.

One renderer serves the setup and the flow. The setup renders the local `dbt/profiles.yml` from
the target configs it stores in Prefect blocks; the flow renders the profile of a run from the
block it loads. What a run uses is therefore what the setup stored.

Secrets never reach a file that outlives a run: the local profiles.yml names a key *file*, and the
profile rendered for a run (which may carry the key's content) lives in a private temporary
directory, readable by the owner only, removed when the run ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ensure_database_dir",
    "private_profiles_dir",
    "profile_outputs",
    "profiles_document",
    "write_private_file",
]


def profile_outputs(configs: Mapping[str, Any], *, keyfile: Path | None = None) -> dict[str, Any]:
    """The `outputs.<target>` mapping of profiles.yml, from target configs as data.

    `configs` is the data of a prefect-dbt target configs block: what the Prefect API returns for
    a block document, or a block's `model_dump`. Working on data lets the flow render a profile
    without importing prefect-dbt and prefect-gcp (and with them pandas and Google's clients).

    For BigQuery, `keyfile` replaces the key content stored in the block by a path to it, so the
    local profiles.yml never holds a secret. Without a key, dbt authenticates with Application
    Default Credentials itself (`method: oauth`) rather than with a token baked into the file, as
    prefect-dbt does, which would expire within the hour.
    """
    common = {
        "type": configs["type"],
        "schema": configs.get("schema", configs.get("schema_")),
        "threads": configs["threads"],
        **(configs.get("extras") or {}),
    }
    if configs["type"] != "bigquery":
        return common
    credentials = configs.get("credentials") or {}
    outputs: dict[str, Any] = {"project": configs.get("project") or credentials.get("project"), **common}
    outputs["dataset"] = outputs.pop("schema")
    if keyfile is not None:
        outputs.update(method="service-account", keyfile=str(keyfile))
    elif credentials.get("service_account_info"):
        outputs.update(method="service-account-json", keyfile_json=dict(credentials["service_account_info"]))
    elif credentials.get("service_account_file"):
        outputs.update(method="service-account", keyfile=str(credentials["service_account_file"]))
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
