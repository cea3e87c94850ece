"""An offline BigQuery for the tests: a test double, not BigQuery.

Google's endpoints cannot be reached from here (the machines reach package registries only), so the
BigQuery side of the pipeline is tested against **bqemulator** 1.4.0: BigQuery's REST API (and the
Storage Read/Write gRPC API) on loopback, backed by DuckDB, with SQLGlot translating BigQuery SQL.
dbt-bigquery and google-cloud-bigquery talk to it unchanged, given its URL as their API endpoint:

- dbt profile: ``type: bigquery``, ``method: oauth-secrets``, ``token: <anything>``,
  ``api_endpoint: "http://127.0.0.1:<port>"`` (the scheme is required), ``project``, ``dataset``,
  ``location: US`` (see :meth:`BigQueryEmulator.dbt_target`). ``BIGQUERY_EMULATOR_HOST`` set to
  the same URL works too, for clients that are not given an endpoint.
- client: ``bigquery.Client(project=..., credentials=AnonymousCredentials(),
  client_options={"api_endpoint": url})`` (see :meth:`BigQueryEmulator.client`).

It runs in a virtualenv of its own (it pins duckdb 1.5 where the project uses duckdb 2), made by
``.ci/install-bqemulator.sh`` with DuckDB's ``spatial`` extension taken from PyPI, so that its
start needs no download. Each :class:`BigQueryEmulator` gets a temporary HOME (holding a link to
that extension) and data directory, free loopback ports and a process group of its own.

Known gaps (bqemulator 1.4.0; what passes on it can still fail on BigQuery, and the reverse):

- ``dbt docs generate`` fails ("Not found: Table <dataset>.__TABLES__"): the emulator has neither
  ``__TABLES__`` nor ``INFORMATION_SCHEMA.COLUMN_FIELD_PATHS``. :func:`add_catalog_macros` copies
  overrides that read ``INFORMATION_SCHEMA.TABLES``/``COLUMNS``/``PARTITIONS`` instead, into a
  project used against the emulator only.
- ``insert_overwrite`` incremental models fail on their second run (``merge``, the default, works).
- Enforced model contracts (``contract: {enforced: true}``) fail.
- ``CAST(x AS NUMERIC)`` is DuckDB's ``DECIMAL(18,3)``: 3 decimal places and 15 integer digits,
  where BigQuery has 9 and 29 (``NUMERIC '1.5'`` literals are ``DECIMAL(38,9)``).
- Types of materialized results can differ: a table built from ``SUM(<INT64>)`` gets a ``NUMERIC``
  column (BigQuery: ``INT64``), so e.g. ``paid_order_count`` of the example marts reads back as
  ``Decimal``. Compare values, not Python types, across the two adapters.
- No ``__TABLES__``, ``INFORMATION_SCHEMA.COLUMN_FIELD_PATHS`` or ``TABLE_STORAGE``; bytes
  processed are reported as 0; no IAM, quotas, slots or costs: credentials are not checked.
- DuckDB's ``avro`` extension is not installed (``BQEMU_ENABLE_FORMAT_EXTENSIONS=false``): Avro
  load and extract jobs answer "unsupported".

Usage, without pytest::

    from tests.emulators.bigquery import BigQueryEmulator

    with BigQueryEmulator() as emulator:
        url = emulator.start("demo-project")
        rows = list(emulator.client().query("select 1 as x").result())

With pytest, the session-scoped fixture ``bigquery_emulator`` of :mod:`tests.emulators`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tests.emulators.processes import end_process_group

if TYPE_CHECKING:
    from google.cloud import bigquery

__all__ = [
    "CATALOG_MACROS",
    "DEFAULT_INSTALL_DIR",
    "INSTALL_SCRIPT",
    "BigQueryEmulator",
    "BigQueryEmulatorError",
    "add_catalog_macros",
    "install",
    "running_emulator",
    "unique_dataset",
]

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / ".ci" / "install-bqemulator.sh"
#: Where the emulator's venv lives: $BQEMULATOR_DIR, else the install script's default.
DEFAULT_INSTALL_DIR = Path(
    os.environ.get("BQEMULATOR_DIR") or Path.home() / ".cache" / "dbt-prefect-pipeline" / "bqemulator"
)
#: The dbt macros that make `dbt docs generate` work on the emulator (a dbt package folder).
CATALOG_MACROS = Path(__file__).resolve().with_name("bigquery_catalog_macros")

_LOOPBACK = "127.0.0.1"
_INSTALL_TIMEOUT_SECONDS = 1200.0


class BigQueryEmulatorError(RuntimeError):
    """The emulator could not be installed, started or reached."""


def _executable(install_dir: Path) -> Path:
    return install_dir / "bin" / "bqemulator"


def _extensions(install_dir: Path) -> Path:
    return install_dir / "duckdb-home" / ".duckdb" / "extensions"


def install(install_dir: Path = DEFAULT_INSTALL_DIR, *, timeout: float = _INSTALL_TIMEOUT_SECONDS) -> Path:
    """Run ``.ci/install-bqemulator.sh install_dir`` (idempotent: ~0.3 s when up to date) and return the
    path of the emulator's executable. The first install downloads ~200 MB from PyPI (30-60 s)."""
    try:
        result = subprocess.run(
            ["bash", str(INSTALL_SCRIPT), str(install_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as error:
        raise BigQueryEmulatorError(f"{INSTALL_SCRIPT} {install_dir} did not finish in {timeout:.0f} s") from error
    if result.returncode != 0:
        raise BigQueryEmulatorError(
            f"{INSTALL_SCRIPT} {install_dir} failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
        )
    lines = result.stdout.strip().splitlines()
    executable = Path(lines[-1]) if lines else install_dir / "bin" / "bqemulator"
    if not executable.is_file():
        raise BigQueryEmulatorError(f"{INSTALL_SCRIPT} printed {executable}, which does not exist")
    return executable


def add_catalog_macros(project_dir: Path, macro_path: str = "macros") -> Path:
    """Copy the emulator's catalog macros into ``project_dir/<macro_path>/bigquery_emulator_catalog/``
    (``macro_path``: one of the project's ``macro-paths``) and return that folder.

    For a *copy* of a project that runs against the emulator only: the macros override
    dbt-bigquery's ``bigquery__get_catalog`` and ``bigquery__get_catalog_relations`` (root-project
    macros take precedence over the adapter's), so `dbt docs generate` works without ``__TABLES__``.
    """
    destination = project_dir / macro_path / "bigquery_emulator_catalog"
    destination.mkdir(parents=True, exist_ok=True)
    for macro in sorted((CATALOG_MACROS / "macros").glob("*.sql")):
        shutil.copy2(macro, destination / macro.name)
    return destination


class BigQueryEmulator:
    """One bqemulator process on loopback: ephemeral (in memory), its own HOME, data dir and ports.

    ``start(project)`` returns the REST endpoint URL (``http://127.0.0.1:<port>``); ``stop()`` ends the
    process group and removes the temporary folder. Usable as a context manager (stops on exit).
    """

    def __init__(
        self,
        install_dir: Path | None = None,
        *,
        auto_install: bool = True,
        startup_timeout: float = 60.0,
        keep_workdir: bool = False,
    ) -> None:
        """``auto_install``: run the install script when needed (else raise if the venv is missing).
        ``keep_workdir``: leave the temporary folder (log, HOME, data) in place after ``stop()``."""
        self.install_dir = install_dir if install_dir is not None else DEFAULT_INSTALL_DIR
        self.auto_install = auto_install
        self.startup_timeout = startup_timeout
        self.keep_workdir = keep_workdir
        self.project: str | None = None
        self.endpoint: str | None = None
        self.grpc_endpoint: str | None = None
        self.workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path | None:
        """The emulator's combined stdout/stderr (JSON lines), while the work dir exists."""
        return None if self.workdir is None else self.workdir / "bqemulator.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def executable(self) -> Path:
        """The installed emulator, installing it first when allowed."""
        if self.auto_install:
            return install(self.install_dir)
        executable = _executable(self.install_dir)
        if not executable.is_file() or not _extensions(self.install_dir).is_dir():
            raise BigQueryEmulatorError(
                f"bqemulator is not installed in {self.install_dir}: run `{INSTALL_SCRIPT} {self.install_dir}`"
            )
        return executable

    def start(self, project: str = "demo-project") -> str:
        """Start the emulator with ``project`` as its default project; return the REST endpoint URL
        once ``/healthz`` answers. Raises :class:`BigQueryEmulatorError` (with the log's tail) if it
        exits or is not healthy within ``startup_timeout`` seconds; the process is then stopped."""
        if self._process is not None:
            raise BigQueryEmulatorError(f"already started, at {self.endpoint}")
        executable = self.executable()
        self.project = project
        self.workdir = Path(tempfile.mkdtemp(prefix="bqemulator-"))
        try:
            return self._start(executable, project, self.workdir)
        except BaseException:
            self.stop()
            raise

    def _start(self, executable: Path, project: str, workdir: Path) -> str:
        home, data = workdir / "home", workdir / "data"
        data.mkdir()
        (home / ".duckdb").mkdir(parents=True)
        # DuckDB looks for extensions in $HOME/.duckdb/extensions/v<version>/<platform>/: there the
        # emulator's `INSTALL spatial` finds the one the install script placed, and downloads nothing.
        extensions = _extensions(self.install_dir)
        try:
            (home / ".duckdb" / "extensions").symlink_to(extensions, target_is_directory=True)
        except OSError:
            shutil.copytree(extensions, home / ".duckdb" / "extensions")
        environment = {name: value for name, value in os.environ.items() if not name.startswith("BQEMU_")}
        environment.update(
            {
                "HOME": str(home),
                "TMPDIR": str(workdir),
                "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",  # `INSTALL avro` would try the internet
                "BQEMU_UPLOAD_STAGING_DIR": str(data / "uploads"),
                "BQEMU_TRACING_ENABLED": "false",
            }
        )
        environment.pop("BIGQUERY_EMULATOR_HOST", None)
        command = [
            str(executable),
            "start",
            "--rest-host", _LOOPBACK, "--rest-port", "0",  # 0: the OS picks a free port, read from the log
            "--grpc-host", _LOOPBACK, "--grpc-port", "0",
            "--project", project,
            "--ephemeral",
            "--data-dir", str(data),
            "--log-level", "info",
            "--log-format", "json",
        ]  # fmt: skip
        assert self.log_path is not None
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command,
                cwd=workdir,  # not the caller's: bqemulator reads a .bqemu.toml from its working directory
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, ended as a whole by stop()
            )
        deadline = time.monotonic() + self.startup_timeout
        rest_port, grpc_port = self._wait_for_ports(deadline)
        self.endpoint = f"http://{_LOOPBACK}:{rest_port}"
        self.grpc_endpoint = f"{_LOOPBACK}:{grpc_port}"
        self._wait_healthy(deadline)
        return self.endpoint

    def _log_tail(self, size: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-size:].decode("utf-8", "replace")

    def _check_alive(self) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise BigQueryEmulatorError(
                f"bqemulator exited with {self._process.returncode} while starting; log:\n{self._log_tail()}"
            )

    def _wait_for_ports(self, deadline: float) -> tuple[int, int]:
        """The REST and gRPC ports the emulator bound, from its `rest.listen`/`grpc.listen` log events."""
        assert self.log_path is not None
        ports: dict[str, int] = {}
        while time.monotonic() < deadline:
            self._check_alive()
            for line in self.log_path.read_text("utf-8", "replace").splitlines():
                if not line.startswith("{"):
                    continue
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("event") in ("rest.listen", "grpc.listen") and isinstance(event.get("port"), int):
                        ports[event["event"]] = event["port"]
            if "rest.listen" in ports and "grpc.listen" in ports:
                return ports["rest.listen"], ports["grpc.listen"]
            time.sleep(0.05)
        raise BigQueryEmulatorError(
            f"bqemulator did not report its ports within {self.startup_timeout:g} s; log:\n{self._log_tail()}"
        )

    def _wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise BigQueryEmulatorError(
            f"bqemulator not healthy at {self.endpoint} within {self.startup_timeout:g} s; log:\n{self._log_tail()}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """End the emulator's process group (SIGTERM, then SIGKILL after ``timeout`` s) and remove its
        temporary folder unless ``keep_workdir``. Idempotent; safe after a failed ``start()``."""
        process, self._process = self._process, None
        if process is not None:
            end_process_group(process, timeout)
        self.endpoint = None
        self.grpc_endpoint = None
        if self.workdir is not None and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> BigQueryEmulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- talking to it -----------------------------------------------------------------------------

    def _require_started(self) -> tuple[str, str]:
        if self.endpoint is None or self.project is None:
            raise BigQueryEmulatorError("the emulator is not started")
        return self.endpoint, self.project

    def environ(self) -> dict[str, str]:
        """Variables pointing Google's BigQuery clients at the emulator (when not given an endpoint)."""
        endpoint, _ = self._require_started()
        return {"BIGQUERY_EMULATOR_HOST": endpoint}

    def dbt_target(self, dataset: str, *, threads: int = 4, location: str = "US") -> dict[str, Any]:
        """A dbt-bigquery output (one target of a profiles.yml) that runs against the emulator."""
        endpoint, project = self._require_started()
        return {
            "type": "bigquery",
            "method": "oauth-secrets",
            "token": "bqemulator-accepts-any-token",
            "api_endpoint": endpoint,
            "project": project,
            "dataset": dataset,
            "location": location,
            "threads": threads,
            "job_retries": 0,
            "job_execution_timeout_seconds": 300,
        }

    def client(self) -> bigquery.Client:
        """A google-cloud-bigquery client on the emulator (anonymous credentials)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        endpoint, project = self._require_started()
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        return bigquery.Client(project=project, credentials=credentials, client_options={"api_endpoint": endpoint})


def unique_dataset(prefix: str = "test") -> str:
    """A dataset name no other test of the session uses (datasets outlive tests on a shared emulator)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def running_emulator(project: str = "demo-project", **options: Any) -> Iterator[BigQueryEmulator]:
    """A started :class:`BigQueryEmulator`, stopped on exit: the body of a session fixture."""
    emulator = BigQueryEmulator(**options)
    try:
        emulator.start(project)
        yield emulator
    finally:
        emulator.stop()


def main() -> None:
    """`python -m tests.emulators.bigquery [PROJECT]`: run one until Ctrl-C, for trying things by hand."""
    import sys

    project = sys.argv[1] if len(sys.argv) > 1 else "demo-project"
    with running_emulator(project) as emulator:
        print(f"bqemulator for project {project} at {emulator.endpoint}  (Ctrl-C stops it)", flush=True)
        print(f"export BIGQUERY_EMULATOR_HOST={emulator.endpoint}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while emulator.running:
                time.sleep(1)


if __name__ == "__main__":
    main()
