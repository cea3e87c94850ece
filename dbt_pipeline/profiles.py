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

from dbt_pipeline.adapters import adapter_class
from dbt_pipeline.errors import DiskFullError
from dbt_pipeline.files import write_atomically

__all__ = [
    "exported",
    "private_profiles_dir",
    "profile_outputs",
    "profiles_document",
    "write_private_file",
]


def profile_outputs(configs: Mapping[str, Any], *, keyfile: Path | None = None) -> dict[str, Any]:
    """The `outputs.<target>` mapping of profiles.yml, from target configs as data, by their adapter.

    `configs` is the data of a prefect-dbt target configs block: what the Prefect API returns for
    a block document, or a block's `model_dump`. Working on data lets the flow render a profile
    without importing prefect-dbt and prefect-gcp (and with them pandas and Google's clients).
    `keyfile` replaces a secret the block holds by the file that holds it (the local profiles.yml).
    """
    return adapter_class(configs["type"]).profile_outputs(configs, keyfile=keyfile)


def profiles_document(profile_name: str, target: str, outputs: dict[str, Any]) -> dict[str, Any]:
    """A profiles.yml document holding one profile with one target, the default one."""
    return {profile_name: {"target": target, "outputs": {target: outputs}}}


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, atomically (never a half-written file).

    Raises `DiskFullError`, naming `path`, when its disk is full: the OSError says neither which file nor what
    to do (a profiles.yml of the setup, a run's private profile in the temp folder).
    """
    try:
        write_atomically(path, text)
    except OSError as error:
        if error.errno not in DiskFullError.DISK_FULL:
            raise
        raise DiskFullError.writing(path, error) from None


@contextmanager
def private_profiles_dir(document: dict[str, Any]) -> Iterator[Path]:
    """A temporary profiles dir (0700, profiles.yml 0600) that is removed however the block exits."""
    directory = Path(tempfile.mkdtemp(prefix="dbt-profiles-"))
    try:
        write_private_file(directory / "profiles.yml", yaml.safe_dump(document, sort_keys=False))
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def exported(variables: Mapping[str, str]) -> Iterator[None]:
    """Export `variables` (secrets a profile reads with env_var()) for the block, then restore the environment."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
