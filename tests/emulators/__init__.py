"""Test doubles for services the tests cannot reach from here, and their pytest fixtures.

- :mod:`tests.emulators.bigquery`: an offline BigQuery (bqemulator) — Google's endpoints are not
  reachable, so BigQuery targets are tested against this double; its module docstring lists the
  known gaps. The core has no pytest dependency; the fixture below wraps it.
- :mod:`tests.emulators.gcs`: an offline Google Cloud Storage (gcp-storage-emulator), for the state
  store's ``gs://`` side; its fixture ``gcs_emulator`` (session scope, ~0.1 s to start) is defined there
  and registered here.

Register the fixtures once, in ``tests/conftest.py``::

    pytest_plugins = ("tests.emulators",)

then ask for ``bigquery_emulator`` (session scope: one emulator for the whole run, ~1-4 s to
start; the first run on a machine also installs it, ~40 s). Give each test a dataset of its own
(:func:`tests.emulators.bigquery.unique_dataset`): datasets live as long as the emulator.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.emulators.bigquery import BigQueryEmulator, running_emulator, unique_dataset
from tests.emulators.gcs import GcsEmulator, gcs_emulator, unique_bucket

__all__ = ["BigQueryEmulator", "GcsEmulator", "bigquery_emulator", "gcs_emulator", "unique_bucket", "unique_dataset"]

#: The default project of the session's emulator.
BIGQUERY_EMULATOR_PROJECT = "demo-project"


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[BigQueryEmulator]:
    """A running BigQuery emulator for the session; ``.endpoint`` is its URL, ``.project`` its project.

    Installs it first when needed (``.ci/install-bqemulator.sh``, into ``$BQEMULATOR_DIR`` or
    ``~/.cache/dbt-prefect-pipeline/bqemulator``); stopped when the session ends, failure or not.
    """
    with running_emulator(BIGQUERY_EMULATOR_PROJECT) as emulator:
        yield emulator
