"""A target's last good state: saved atomically, fetched as it was saved, and every failure said clearly.

Each behaviour is checked on a local folder and on gs:// against a real GCS server on loopback
(gcp-storage-emulator, ``tests.emulators.gcs``), through gcsfs as production uses it.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dbt_pipeline.errors import PipelineError, StateStoreError
from dbt_pipeline.state_store import KEEP_RUNS, POINTER, LastGoodState, StateStore, location_problem
from tests.conftest import REPO
from tests.emulators.gcs import GcsEmulator, unique_bucket
from tests.loopback import TokenEndpoint, serving

TARGET = "dev"
DBT_VERSION = "1.11.16"


@dataclass
class Where:
    """A store's location and options, and a plain fsspec view of it to inspect or damage it behind its back."""

    location: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def store(self, **options: Any) -> StateStore:
        return StateStore.at(self.location, TARGET, storage_options=self.storage_options, **options)

    def _fs(self) -> tuple[fsspec.AbstractFileSystem, str]:
        fs, root = fsspec.core.url_to_fs(self.location, **self.storage_options)
        fs.invalidate_cache()
        return fs, root.rstrip("/")

    def runs(self) -> list[str]:
        """The run folders of the target, as the store holds them."""
        fs, root = self._fs()
        try:
            entries = fs.ls(f"{root}/{TARGET}/runs", detail=False)
        except FileNotFoundError:
            return []
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries)

    def read(self, key: str) -> bytes:
        fs, root = self._fs()
        return bytes(fs.cat_file(f"{root}/{TARGET}/{key}"))

    def write(self, key: str, data: bytes) -> None:
        fs, root = self._fs()
        fs.pipe_file(f"{root}/{TARGET}/{key}", data)

    def remove(self, key: str) -> None:
        fs, root = self._fs()
        fs.rm(f"{root}/{TARGET}/{key}", recursive=True)


@pytest.fixture(params=["folder", "gcs"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    """A fresh store: a local folder, or a prefix of a new bucket on the session's GCS emulator."""
    if request.param == "folder":
        return Where(str(tmp_path / "state"))
    emulator: GcsEmulator = request.getfixturevalue("gcs_emulator")
    bucket = emulator.create_bucket(unique_bucket("state"))
    return Where(f"gs://{bucket}/dbt-state", emulator.storage_options())


def artifacts(directory: Path, run: str, *, sources: bool = True) -> dict[str, Path]:
    """dbt-like artifacts of run `run`, each with content of its own (some binary-looking bytes too)."""
    directory.mkdir(parents=True, exist_ok=True)
    names = ["manifest.json", "run_results.json"] + (["sources.json"] if sources else [])
    files = {}
    for name in names:
        path = directory / f"{run}-{name}"
        payload = {"run": run, "artifact": name, "nodes": {f"model.demo.m{i}": i for i in range(200)}}
        path.write_text(json.dumps(payload) + "\n\u00e9\u2713", encoding="utf-8")
        files[name] = path
    return files


def save(store: StateStore, directory: Path, run: str, *, sources: bool = True) -> dict[str, Path]:
    files = artifacts(directory / "target", run, sources=sources)
    store.save(files, run_id=run, metadata={"flow_run_id": f"flow-{run}", "dbt_version": DBT_VERSION})
    return files


def assert_state(state: LastGoodState | None, run: str, files: Mapping[str, Path], into: Path) -> None:
    assert state is not None
    assert state.run_id == run
    assert state.path == into
    assert state.files == tuple(files)
    assert dict(state.metadata) == {"flow_run_id": f"flow-{run}", "dbt_version": DBT_VERSION}
    assert {path.name for path in into.iterdir()} == set(files), "the folder holds the state's files, nothing else"
    for name, original in files.items():
        assert (into / name).read_bytes() == original.read_bytes(), name


# -- the round trip ------------------------------------------------------------------------------------


def test_no_state_yet(where: Where, tmp_path: Path) -> None:
    """A target that never saved a state has none: fetch says so without creating anything remote."""
    assert where.store().fetch(tmp_path / "fetched") is None
    assert where.runs() == []


def test_save_then_fetch_gives_back_the_same_bytes_and_metadata(where: Where, tmp_path: Path) -> None:
    """What a successful run saved is what the next run fetches, byte for byte, from another store object."""
    before = datetime.now(UTC)
    files = save(where.store(), tmp_path, "run-1")
    into = tmp_path / "fetched"
    state = where.store().fetch(into)  # another instance, as in the next flow run
    assert_state(state, "run-1", files, into)
    assert state is not None
    assert before - timedelta(seconds=1) <= state.saved_at <= datetime.now(UTC)
    assert state.saved_at.tzinfo is not None
    pointer = json.loads(where.read(POINTER))
    assert pointer["run_id"] == "run-1"
    assert pointer["files"] == ["manifest.json", "run_results.json", "sources.json"]
    assert pointer["metadata"] == {"flow_run_id": "flow-run-1", "dbt_version": DBT_VERSION}
    assert datetime.fromisoformat(pointer["saved_at"]) == state.saved_at
    assert where.runs() == ["run-1"]


def test_each_save_moves_the_pointer_and_the_three_latest_runs_are_kept(where: Where, tmp_path: Path) -> None:
    """Every save becomes the last good state; older runs are pruned, the 3 latest (the previous ones too) stay."""
    store = where.store()
    saved = {}
    for number in range(1, 6):
        run = f"run-{number}"
        saved[run] = save(store, tmp_path / run, run, sources=number % 2 == 1)
        into = tmp_path / "fetched"  # the same folder each time: files of an older state must not linger
        assert_state(where.store().fetch(into), run, saved[run], into)
        assert where.runs() == [f"run-{n}" for n in range(max(1, number - KEEP_RUNS + 1), number + 1)]
    assert json.loads(where.read(POINTER))["previous"] == ["runs/run-4", "runs/run-3"]


def test_the_same_run_saving_again_gets_a_folder_of_its_own(where: Where, tmp_path: Path) -> None:
    """A retried flow run (same id) saving again never rewrites the files the pointer names."""
    store = where.store()
    save(store, tmp_path / "first", "run-1")
    second = save(store, tmp_path / "second", "run-1", sources=False)
    into = tmp_path / "fetched"
    assert_state(store.fetch(into), "run-1", second, into)
    runs = where.runs()
    assert len(runs) == 2
    assert "run-1" in runs
    assert json.loads(where.read(POINTER))["previous"] == ["runs/run-1"]


# -- failures leave the last good state as it was --------------------------------------------------------


class Cancelled(BaseException):
    """What a flow's cancellation or a Ctrl-C raises in the middle of an upload."""


@pytest.mark.parametrize("failure", [OSError("connection reset by peer"), Cancelled()], ids=["error", "cancelled"])
def test_a_save_interrupted_before_the_pointer_leaves_the_previous_state(
    where: Where, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    """The last file's upload fails: the pointer was not written, readers still get the previous state whole."""
    first = save(where.store(), tmp_path / "first", "run-1")
    store = where.store()
    backend = store._backend
    put = backend.put

    def failing_put(source: Path, key: str) -> None:
        if key.endswith("/sources.json"):
            raise failure
        put(source, key)

    monkeypatch.setattr(backend, "put", failing_put)
    expected = StateStoreError if isinstance(failure, Exception) else Cancelled
    with pytest.raises(expected) as caught:
        save(store, tmp_path / "second", "run-2")
    if isinstance(caught.value, StateStoreError):
        assert where.location in str(caught.value)
        assert "connection reset by peer" in str(caught.value)
    into = tmp_path / "fetched"
    assert_state(where.store().fetch(into), "run-1", first, into)
    monkeypatch.undo()

    # The next save succeeds, and removes what the interrupted one left behind.
    third = save(where.store(), tmp_path / "third", "run-3")
    assert_state(where.store().fetch(into), "run-3", third, into)
    assert where.runs() == ["run-1", "run-3"]


def test_old_runs_that_cannot_be_deleted_are_only_a_warning(
    where: Where, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The pointer moved, so the save succeeded: failing to prune is logged, and the next save prunes."""
    for number in range(1, 4):
        save(where.store(), tmp_path / f"run-{number}", f"run-{number}")
    store = where.store(logger=logging.getLogger("flow-run"))

    def listing_refused(key: str) -> list[str]:
        raise OSError("listing refused")

    monkeypatch.setattr(store._backend, "folders", listing_refused)
    with caplog.at_level(logging.WARNING, logger="flow-run"):
        latest = save(store, tmp_path / "run-4", "run-4")
    assert "clean up old runs of the last good state" in caplog.text
    assert "old runs stay until the next save" in caplog.text
    into = tmp_path / "fetched"
    assert_state(where.store().fetch(into), "run-4", latest, into)
    assert where.runs() == ["run-1", "run-2", "run-3", "run-4"]
    save(where.store(), tmp_path / "run-5", "run-5")
    assert where.runs() == ["run-3", "run-4", "run-5"]


def test_a_file_gone_before_the_save_saves_nothing(where: Where, tmp_path: Path) -> None:
    """An artifact missing from the run's target folder: a clear error, and the previous state stays."""
    first = save(where.store(), tmp_path / "first", "run-1")
    files = artifacts(tmp_path / "second", "run-2")
    files["sources.json"].unlink()
    with pytest.raises(StateStoreError, match=r"sources\.json not found\. Nothing was saved"):
        where.store().save(files, run_id="run-2", metadata={})
    into = tmp_path / "fetched"
    assert_state(where.store().fetch(into), "run-1", first, into)
    assert where.runs() == ["run-1"]


def test_a_fetch_racing_saves_reads_the_new_pointer(
    where: Where, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saves that move the pointer and prune the run a reader just resolved: the reader reads the new one."""
    save(where.store(), tmp_path / "first", "run-1")
    reader = where.store()
    backend = reader._backend
    get = backend.get
    latest: dict[str, Path] = {}

    def get_after_saves(key: str, destination: Path) -> None:
        if not latest:  # the first download: meanwhile, 3 runs save and prune run-1
            for number in range(2, 5):
                latest.update(save(where.store(), tmp_path / f"run-{number}", f"run-{number}"))
            assert "run-1" not in where.runs()
        get(key, destination)

    monkeypatch.setattr(backend, "get", get_after_saves)
    into = tmp_path / "fetched"
    assert_state(reader.fetch(into), "run-4", latest, into)


# -- a broken state, an unusable store: one clear error each -----------------------------------------------


def test_a_pointer_naming_a_missing_run_is_a_clear_error(where: Where, tmp_path: Path) -> None:
    """The pointer's run was deleted behind the store's back: the error names the location, the file and the fix."""
    save(where.store(), tmp_path, "run-1")
    where.remove("runs/run-1")
    with pytest.raises(StateStoreError) as caught:
        where.store().fetch(tmp_path / "fetched")
    message = str(caught.value)
    assert isinstance(caught.value, PipelineError)
    assert f"{where.location}/{TARGET}/runs/run-1/manifest.json does not exist" in message
    assert "names run run-1" in message
    assert f"Fix: delete {where.location}/{TARGET}/{POINTER}" in message


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ({POINTER: b"{not json"}, r"is unreadable: .*last_good\.json: not JSON"),
        ({POINTER: b'{"format": 99}'}, r"is unreadable: .*format 99"),
        ({"runs/run-1/run_results.json": b"{}"}, r"is damaged: .*run_results\.json does not match the checksum"),
    ],
    ids=["not-json", "newer-format", "file-changed"],
)
def test_a_damaged_state_is_a_clear_error_and_the_next_save_replaces_it(
    where: Where, tmp_path: Path, damage: dict[str, bytes], expected: str
) -> None:
    """A pointer that is not one, or a file changed since its save: the error says to delete the pointer."""
    save(where.store(), tmp_path / "first", "run-1")
    for key, data in damage.items():
        where.write(key, data)
    with pytest.raises(StateStoreError, match=expected) as caught:
        where.store().fetch(tmp_path / "fetched")
    assert f"Fix: delete {where.location}/{TARGET}/{POINTER}" in str(caught.value)
    second = save(where.store(), tmp_path / "second", "run-2")
    into = tmp_path / "fetched-again"
    assert_state(where.store().fetch(into), "run-2", second, into)


def test_a_missing_bucket_is_a_clear_error(gcs_emulator: GcsEmulator, tmp_path: Path) -> None:
    """A bucket that does not exist is not "no state yet": fetch and save both say to create it."""
    where = Where("gs://no-such-bucket/dbt-state", gcs_emulator.storage_options())
    for action in (lambda store: store.fetch(tmp_path / "fetched"), lambda store: save(store, tmp_path, "run-1")):
        with pytest.raises(StateStoreError) as caught:
            action(where.store())
        message = str(caught.value)
        assert "gs://no-such-bucket/dbt-state" in message
        assert "Fix: create the bucket gs://no-such-bucket, or correct state_store in the environments file" in message


def test_a_folder_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    """A local location that is not a folder: the error names it and says what to do."""
    location = tmp_path / "state"
    location.write_text("not a folder", encoding="utf-8")
    store = StateStore.at(location, TARGET)
    for action in (lambda: store.fetch(tmp_path / "fetched"), lambda: save(store, tmp_path, "run-1")):
        with pytest.raises(StateStoreError, match=rf"at {location}: the folder cannot be written or read .*Fix: make"):
            action()


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_an_unreachable_endpoint_is_a_clear_error_within_the_timeout(tmp_path: Path) -> None:
    """No server on the endpoint: gcsfs retries, the store stops it at its timeout, one error names the location."""
    options = {"endpoint_url": f"http://127.0.0.1:{closed_port()}", "token": "anon"}
    store = StateStore.at("gs://state-bucket/dbt-state", TARGET, storage_options=options, timeout=2)
    actions: dict[str, Callable[[], object]] = {
        "fetch": lambda: store.fetch(tmp_path / "fetched"),
        "save": lambda: save(store, tmp_path, "run-1"),
    }
    for name, action in actions.items():
        started = time.monotonic()
        with pytest.raises(StateStoreError) as caught:
            action()
        elapsed = time.monotonic() - started
        assert elapsed < 8, f"{name}: {elapsed:.1f} s"
        message = str(caught.value)
        assert message.startswith(
            f"Could not {name} the last good state of target 'dev' at gs://state-bucket/dbt-state: "
        )
        assert "no answer within 2 s" in message or "unreachable" in message
        assert "Fix: check the network" in message
        assert "Traceback" not in message


# -- credentials -------------------------------------------------------------------------------------------


@pytest.fixture
def token_endpoint() -> Iterator[TokenEndpoint]:
    with serving(TokenEndpoint(), "fake-google-token-endpoint") as server:
        yield server


def service_account_info(token_uri: str, *, private_key: str | None = None) -> dict[str, str]:
    if private_key is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    return {
        "type": "service_account", "project_id": "demo-project", "private_key_id": "k1", "private_key": private_key,
        "client_email": "dbt@demo-project.iam.gserviceaccount.com", "client_id": "1", "token_uri": token_uri,
    }  # fmt: skip


def test_a_service_account_given_as_info_signs_in(
    gcs_emulator: GcsEmulator, token_endpoint: TokenEndpoint, tmp_path: Path
) -> None:
    """gcsfs takes the service-account info (the gcp-credentials block's) as its token, and gets an access token."""
    bucket = gcs_emulator.create_bucket(unique_bucket("state"))
    options = {
        "endpoint_url": gcs_emulator.storage_options()["endpoint_url"],
        "token": service_account_info(token_endpoint.url),
    }
    store = StateStore.at(f"gs://{bucket}/dbt-state", TARGET, storage_options=options)
    files = save(store, tmp_path, "run-1")
    into = tmp_path / "fetched"
    assert_state(store.fetch(into), "run-1", files, into)
    assert "urn:ietf:params:oauth:grant-type:jwt-bearer" in [form.get("grant_type") for form in token_endpoint.requests]
    assert "service_account" not in repr(store)


def test_credentials_never_appear_in_an_error(gcs_emulator: GcsEmulator, tmp_path: Path) -> None:
    """A damaged key: the error says the credentials are unusable, without quoting any of them."""
    marker = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7secretmarker"
    info = service_account_info("http://127.0.0.1:9/token", private_key=f"-----BEGIN PRIVATE KEY-----\n{marker}\n")
    options = {"endpoint_url": gcs_emulator.storage_options()["endpoint_url"], "token": info}
    store = StateStore.at("gs://any-bucket/dbt-state", TARGET, storage_options=options, timeout=5)
    with pytest.raises(StateStoreError, match=r"the credentials are unusable \(KeyError\)") as caught:
        store.fetch(tmp_path / "fetched")
    message = str(caught.value)
    assert "gs://any-bucket/dbt-state" in message
    for secret in (marker, info["client_email"], "PRIVATE KEY"):
        assert secret not in message
    assert marker not in repr(store)


# -- the location ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        ("gs://bucket/prefix", None),
        ("memory://state", None),
        ("file:///srv/state", None),
        ("gcs3://bucket/prefix", r"fsspec knows no protocol 'gcs3'"),
        ("https://example.com/state", r"cannot hold a state"),
        ("simplecache::gs://bucket/prefix", r"chained URLs"),
        ("gs://", r"names no bucket"),
        ("s3://bucket/prefix", r"needs the Python package 's3fs'"),
    ],
)
def test_which_urls_can_hold_a_state(location: str, problem: str | None) -> None:
    """A URL is checked without its client: a known, writable protocol whose package is installed."""
    found = location_problem(location)
    if problem is None:
        assert found is None
        return
    assert found is not None
    assert re.search(problem, found), found
    with pytest.raises(StateStoreError, match=r"The state store .* of target 'dev' cannot be used: "):
        StateStore.at(location, TARGET)


def test_a_memory_store_works_too(tmp_path: Path) -> None:
    """Any writable fsspec filesystem serves: fsspec's in-memory one, here."""
    where = Where(f"memory://state-{time.monotonic_ns()}")
    files = save(where.store(), tmp_path, "run-1")
    into = tmp_path / "fetched"
    assert_state(where.store().fetch(into), "run-1", files, into)


def test_only_a_gs_store_imports_gcs_clients() -> None:
    """Loading the environments file and using a local store import neither gcsfs nor Google's clients."""
    script = """
import sys, tempfile
from pathlib import Path
from dbt_pipeline.environments import load_environments
from dbt_pipeline.state_store import StateStore

load_environments()
with tempfile.TemporaryDirectory() as directory:
    manifest = Path(directory, "manifest.json")
    manifest.write_text("{}")
    store = StateStore.at(Path(directory, "state"), "dev")
    store.save({"manifest.json": manifest}, run_id="r1", metadata={})
    assert store.fetch(Path(directory, "fetched")) is not None
    StateStore.at("gs://bucket/prefix", "prod", storage_options={"token": "anon"})
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("gcsfs", "google", "aiohttp"))
print(",".join(loaded))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", result.stdout
