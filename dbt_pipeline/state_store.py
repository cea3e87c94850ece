"""Each target's last good state: the dbt artifacts of its latest successful run, for dbt's `--state`.

A state store is a folder, or any fsspec URL (`gs://bucket/prefix` on GCS); it holds, per target:

    <location>/<target>/last_good.json          the pointer: which run, when, its files and their checksums
    <location>/<target>/runs/<run id>/<file>    a saved run's artifacts: manifest.json, run_results.json,
                                                and sources.json when source freshness ran

Saving is atomic for readers: the run's files are uploaded first, under a folder of their own that no
pointer names yet, and the pointer is written last, in one write (a local file is written next to the
pointer, then renamed over it with `os.replace`; an object store replaces an object whole, with one
put). A reader therefore sees the previous state or the new one, never half of each; a save that fails
or is interrupted before the pointer's write leaves the previous state as it was. The folders of the
3 most recent saves are kept (the pointer lists them), older ones deleted once the pointer has moved,
so a reader that resolved the previous pointer a moment earlier can still read its files.

Saves of one target must come one at a time, as the flow's runs of a target do (its target slot): a
save deletes the run folders no pointer keeps, which would include another save's, still uploading.

Every failure of the store (a missing bucket, a permission denied, an endpoint that does not answer,
a pointer naming files that are gone) is one `StateStoreError` naming the location and what to do;
credentials never appear in a message. Client libraries are imported when a store needs them: fsspec
for a URL, gcsfs (Google's clients) for a `gs://` URL only.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from dbt_pipeline.errors import StateStoreError
from dbt_pipeline.settings import ENVIRONMENT_NAME_PATTERN

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = [
    "ARTIFACTS",
    "DEFAULT_TIMEOUT_SECONDS",
    "KEEP_RUNS",
    "POINTER",
    "LastGoodState",
    "StateStore",
    "is_url",
    "local_folder",
    "location_problem",
]

Logger = logging.Logger | logging.LoggerAdapter[Any]

POINTER = "last_good.json"
RUNS = "runs"
#: Saved runs kept per target: the current one and the two before it.
KEEP_RUNS = 3
#: The dbt artifacts a state may hold; `fetch` removes from its folder those the fetched state lacks.
ARTIFACTS = ("manifest.json", "run_results.json", "sources.json")
#: Longest an operation on a remote store (one file's upload, download...) may take, retries included.
DEFAULT_TIMEOUT_SECONDS = 300.0
_FORMAT = 1
# Run ids, folder and file names: one path component, no leading dot, nothing a shell or URL would mangle.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A URL: `<protocol>://...`, or an fsspec chain `<protocol>::<url>` (refused, but never taken for a folder).
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)(://|::)(.*)$", re.DOTALL)
_LOCAL_PROTOCOLS = ("file", "local")
# Protocols fsspec knows that cannot hold a state: they only read, or only wrap another store.
_NOT_WRITABLE = (
    *("http", "https", "github", "git", "gist", "zip", "tar", "libarchive", "reference", "data"),
    *("dir", "simplecache", "filecache", "blockcache", "cached", "async_wrapper", "asyncwrapper", "generic"),
)
_CHUNK = 1 << 20
_MAX_REASON = 300
# storage_options whose values are scrubbed from messages (from 6 characters on: "anon" is no secret).
_SECRET_KEY = re.compile(r"(?i)token|secret|passw|credential|key|auth|sas|signature|session")
_MIN_SECRET_LENGTH = 6

_module_logger = logging.getLogger(__name__)


# --- locations


def is_url(location: str) -> bool:
    """Whether `location` is a URL (`<protocol>://...`) rather than a folder."""
    return _URL.match(location) is not None


def local_folder(location: str | Path) -> Path | None:
    """The folder `location` names (a path, or a `file://` URL), or None for any other URL."""
    if isinstance(location, Path):
        return location.expanduser()
    match = _URL.match(location)
    if match is None:
        return Path(location).expanduser()
    if match.group(1).lower() in _LOCAL_PROTOCOLS and match.group(2) == "://":
        return Path(match.group(3)).expanduser()
    return None


def location_problem(location: str) -> str | None:
    """Why the URL `location` cannot be a state store, in words that say what to use instead; None if it can.

    Checks what can be checked without importing the protocol's client or reaching the store: fsspec
    knows the protocol, it can write, its package is installed, and the URL names a bucket or a path.
    """
    match = _URL.match(location)
    if match is None:
        return None
    protocol, rest = match.group(1).lower(), match.group(3)
    if match.group(2) == "::" or "::" in rest:
        return "chained URLs (a::b://...) are not supported: use a folder or one URL such as gs://bucket/prefix"
    if protocol in _LOCAL_PROTOCOLS:
        return None if rest.strip("/") else "the URL names no folder"
    from fsspec.registry import known_implementations, registry

    known = set(known_implementations) | set(registry)
    if protocol not in known:
        examples = ", ".join(f"{name}://" for name in ("gs", "s3", "abfs", "file") if name in known)
        return f"fsspec knows no protocol {protocol!r}: use a folder, or a URL such as gs://bucket/prefix ({examples})"
    if protocol in _NOT_WRITABLE:
        return f"{protocol}:// cannot hold a state (it only reads, or wraps another store): use a folder or gs://..."
    implementation = known_implementations.get(protocol, {}).get("class", "")
    package = implementation.split(".", 1)[0]
    if package and protocol not in registry and importlib.util.find_spec(package) is None:
        return (
            f"{protocol}:// needs the Python package {package!r}, which is not installed: add it to the "
            "project's dependencies, or use a folder or gs://bucket/prefix"
        )
    if not rest.strip("/"):
        return "the URL names no bucket or path: write it as <protocol>://<bucket>/<prefix>"
    return None


def _redacted(location: str) -> str:
    """`location` without the user and password a URL may carry (proto://user:secret@host/...)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1***@", location)


# --- what fetch returns


@dataclass(frozen=True)
class LastGoodState:
    """A target's last good state, fetched into a local folder: pass `path` to dbt's `--state`.

    Attributes:
        run_id: The run that saved it (the flow run's id).
        saved_at: When it was saved (UTC).
        files: The artifacts it holds, now in `path` (manifest.json, run_results.json, maybe sources.json).
        metadata: What the run recorded with it (flow run id, dbt version...).
        path: The local folder holding the files.
    """

    run_id: str
    saved_at: datetime
    files: tuple[str, ...]
    metadata: Mapping[str, str]
    path: Path


@dataclass(frozen=True)
class _Pointer:
    """The content of last_good.json."""

    run_id: str
    folder: str  # "runs/<name>", relative to the target's folder
    saved_at: datetime
    files: tuple[str, ...]
    sha256: Mapping[str, str]
    metadata: Mapping[str, str]
    previous: tuple[str, ...]  # the folders of the earlier saves still kept, most recent first

    def to_json(self, target: str) -> bytes:
        document = {
            "format": _FORMAT,
            "target": target,
            "run_id": self.run_id,
            "folder": self.folder,
            "saved_at": self.saved_at.isoformat(),
            "files": list(self.files),
            "sha256": dict(self.sha256),
            "metadata": dict(self.metadata),
            "previous": list(self.previous),
        }
        return (json.dumps(document, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> _Pointer:
        """Parse a pointer; ValueError says what is wrong with it."""
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"not JSON ({error})") from None
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        if document.get("format") != _FORMAT:
            raise ValueError(
                f"format {document.get('format')!r}, where this version of the pipeline reads format {_FORMAT}"
            )
        run_id, folder, files = document.get("run_id"), document.get("folder"), document.get("files")
        if not isinstance(run_id, str) or not _SAFE_NAME.match(run_id):
            raise ValueError(f"run_id {run_id!r} is not a run id")
        if not _is_run_folder(folder):
            raise ValueError(f"folder {folder!r} is not runs/<name>")
        if not isinstance(files, list) or not files or not all(_is_safe_name(name) for name in files):
            raise ValueError(f"files {files!r} is not a list of file names")
        try:
            saved_at = datetime.fromisoformat(str(document.get("saved_at")))
        except ValueError:
            raise ValueError(f"saved_at {document.get('saved_at')!r} is not an ISO date and time") from None
        sha256, metadata = document.get("sha256", {}), document.get("metadata", {})
        previous = document.get("previous", [])
        for key, value in (("sha256", sha256), ("metadata", metadata)):
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError(f"{key} is not a mapping of strings")
        if not isinstance(previous, list) or not all(_is_run_folder(item) for item in previous):
            raise ValueError(f"previous {previous!r} is not a list of runs/<name> folders")
        return cls(
            run_id=run_id,
            folder=str(folder),
            saved_at=saved_at,
            files=tuple(files),
            sha256=MappingProxyType(dict(sha256)),
            metadata=MappingProxyType(dict(metadata)),
            previous=tuple(previous),
        )


def _is_safe_name(name: object) -> bool:
    return isinstance(name, str) and _SAFE_NAME.match(name) is not None


def _is_run_folder(folder: object) -> bool:
    if not isinstance(folder, str):
        return False
    parent, _, name = folder.partition("/")
    return parent == RUNS and _is_safe_name(name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _OpenError(Exception):
    """The filesystem's client could not be created from the store's options (a damaged key...)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(type(error).__name__)  # never the error's text: it may quote the options
        self.error = error


class _MissingFileError(Exception):
    """A file the pointer names is not in the store."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


# --- where the bytes go: a local folder, or an fsspec filesystem


class _Backend(Protocol):
    """A store's operations, on keys relative to its location ("prod/runs/<id>/manifest.json")."""

    def url(self, key: str) -> str:
        """Where `key` is, for messages."""
        ...

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        ...

    def put(self, source: Path, key: str) -> None:
        """Copy the local file `source` to `key`."""
        ...

    def get(self, key: str, destination: Path) -> None:
        """Copy `key` to the local file `destination`; FileNotFoundError when `key` does not exist."""
        ...

    def replace(self, key: str, data: bytes) -> None:
        """Write `data` at `key` in one atomic step: a reader sees the old content or the new one."""
        ...

    def folders(self, key: str) -> list[str]:
        """The names of the folders directly under `key` (none when `key` does not exist)."""
        ...

    def remove_folder(self, key: str) -> None:
        """Delete the folder `key` and everything under it (nothing when it does not exist)."""
        ...

    def check_reachable(self) -> None:
        """Raise when the store's container (a bucket) does not exist; nothing where that cannot be told."""
        ...


class _LocalFolder:
    """A folder of this machine: files are fsynced, the pointer replaced with `os.replace`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, key: str) -> str:
        return str(self.root / key)

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, source: Path, key: str) -> None:
        destination = self.root / key
        destination.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as reader, destination.open("wb") as writer:
            shutil.copyfileobj(reader, writer, _CHUNK)
            writer.flush()
            os.fsync(writer.fileno())

    def get(self, key: str, destination: Path) -> None:
        shutil.copyfile(self.root / key, destination)

    def replace(self, key: str, data: bytes) -> None:
        """Write a temporary file in the pointer's folder, flush it to disk, then rename it over the pointer."""
        destination = self.root / key
        destination.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
        temporary = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as writer:
                os.fchmod(writer.fileno(), 0o644)  # mkstemp's 0600 would hide the pointer from other readers
                writer.write(data)
                writer.flush()
                os.fsync(writer.fileno())
            temporary.replace(destination)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        # The rename itself is durable once the folder's entry is on disk (where the filesystem can tell).
        with contextlib.suppress(OSError):
            folder = os.open(destination.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)

    def folders(self, key: str) -> list[str]:
        try:
            return sorted(entry.name for entry in (self.root / key).iterdir() if entry.is_dir())
        except FileNotFoundError:
            return []

    def remove_folder(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.root / key)

    def check_reachable(self) -> None:
        """A folder that does not exist yet holds no state; the first save creates it."""


class _FileSystem:
    """An fsspec filesystem: the pointer is one object put (`pipe_file`), atomic on an object store.

    Each call of an asynchronous filesystem (gcsfs, s3fs...) is bounded by `timeout`, retries included.
    """

    def __init__(self, fs: AbstractFileSystem, root: str, location: str, timeout: float) -> None:
        from fsspec.asyn import AsyncFileSystem

        self.fs = fs
        self.root = root.rstrip("/")
        self.location = location.rstrip("/")
        # fsspec's blocking wrappers of an async filesystem take `timeout` for the whole call.
        self.options: dict[str, Any] = {"timeout": timeout} if isinstance(fs, AsyncFileSystem) else {}

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def url(self, key: str) -> str:
        return f"{self.location}/{key}"

    def read(self, key: str) -> bytes | None:
        try:
            data = self.fs.cat_file(self._path(key), **self.options)
        except FileNotFoundError:
            return None
        return bytes(data)

    def put(self, source: Path, key: str) -> None:
        self.fs.put_file(str(source), self._path(key), **self.options)

    def get(self, key: str, destination: Path) -> None:
        self.fs.get_file(self._path(key), str(destination), **self.options)

    def replace(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(key), data, **self.options)

    def folders(self, key: str) -> list[str]:
        path = self._path(key)
        self.fs.invalidate_cache(path)  # listings are cached per filesystem instance; another process may write
        try:
            entries = self.fs.ls(path, detail=True, **self.options)
        except FileNotFoundError:
            return []
        return sorted(entry["name"].rstrip("/").rsplit("/", 1)[-1] for entry in entries if entry["type"] == "directory")

    def remove_folder(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._path(key), recursive=True, **self.options)
        self.fs.invalidate_cache(self._path(key))

    def check_reachable(self) -> None:
        """On GCS, list one object of the bucket: 404 when the bucket does not exist (needs only list access).

        Elsewhere a missing pointer cannot be told from a missing bucket cheaply; the first save says which.
        """
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else tuple(self.fs.protocol)
        if "gs" not in protocols:
            return
        bucket = self.root.split("/", 1)[0]
        self.fs.call("GET", "b/{}/o", bucket, maxResults=1, json_out=True, **self.options)


# --- the store


class StateStore:
    """One target's last good state in a store: `save` after a successful run, `fetch` before the next one."""

    def __init__(
        self,
        location: str | Path,
        target: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        logger: Logger | None = None,
    ) -> None:
        """See `StateStore.at`."""
        if not re.match(ENVIRONMENT_NAME_PATTERN, target):
            raise ValueError(f"{target!r} is not a target name")
        self.target = target
        self._options = dict(storage_options or {})
        self._secrets = tuple(_secret_values(self._options))
        self._timeout = timeout
        self._logger = logger or _module_logger
        self._opened: _Backend | None = None
        folder = local_folder(location)
        self._url: str | None = None
        if folder is not None:
            root = folder.resolve()
            self._opened = _LocalFolder(root)
            #: Where the store is, for messages: a folder, or the URL without a user or password in it.
            self.location = str(root)
            return
        self._url = str(location)
        self.location = _redacted(self._url).rstrip("/")
        problem = location_problem(self._url)
        if problem is not None:
            msg = f"The state store {self.location} of target {target!r} cannot be used: {problem}."
            raise StateStoreError(_scrubbed(msg, self._secrets))

    def __repr__(self) -> str:
        return f"StateStore({self.location!r}, target={self.target!r})"

    @classmethod
    def at(
        cls,
        location: str | Path,
        target: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        logger: Logger | None = None,
    ) -> StateStore:
        """The state store of `target` at `location`: a folder, or an fsspec URL such as gs://bucket/prefix.

        `storage_options` go to the URL's fsspec filesystem. For gs:// (gcsfs): `{"token": <service-account
        info dict>, "project": ...}`; without a token gcsfs looks for Application Default Credentials; for
        an emulator, `{"endpoint_url": "http://127.0.0.1:<port>", "token": "anon"}`. `timeout` bounds each
        operation on an asynchronous store (gcsfs, s3fs, adlfs: one file's upload, say), its retries included
        (gcsfs retries a failed request 6 times, over about 30 s). `logger` receives the warnings of a save
        (old runs that could not be deleted); this module's logger by default.

        The store's client (gcsfs) is not imported, nor the store reached, before the first `save` or
        `fetch`. Raises StateStoreError when
        `location` cannot be a store (say, an unknown protocol), ValueError when `target` is not a
        target's name.
        """
        return cls(location, target, storage_options=storage_options, timeout=timeout, logger=logger)

    @property
    def _backend(self) -> _Backend:
        """The store's filesystem, opened on first use (raises what opening raises: call within _failures)."""
        if self._opened is None:
            from fsspec.core import url_to_fs

            assert self._url is not None
            try:
                fs, root = url_to_fs(self._url, **self._options)
            except ImportError:
                raise
            except Exception as error:  # the client refused its options: credentials, most of the time
                raise _OpenError(error) from error
            self._opened = _FileSystem(fs, root, self.location, self._timeout)
        return self._opened

    # --- save

    def save(self, files: Mapping[str, Path], *, run_id: str, metadata: Mapping[str, str]) -> None:
        """Keep `files` (stored name -> local file, manifest.json required) as the target's last good state.

        The files are uploaded under `<target>/runs/<run_id>/`, then the pointer is written, last, in one
        write: until then readers get the previous state, and a failure leaves it as it was. Folders of
        saves older than the 3 most recent are then deleted; failing to delete them is only a warning.
        Raises StateStoreError (nothing changed for readers) when the store cannot be written.
        """
        if not _is_safe_name(run_id):
            raise ValueError(f"{run_id!r} is not a run id: letters, digits, '.', '_' and '-' only")
        if "manifest.json" not in files:
            raise ValueError("a state needs the run's manifest.json (dbt's --state reads it)")
        for name in files:
            if not _is_safe_name(name):
                raise ValueError(f"{name!r} is not a file name")
        if not all(isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()):
            raise ValueError("metadata maps strings to strings")
        missing = [str(path) for path in files.values() if not Path(path).is_file()]
        if missing:
            msg = (
                f"Could not save the last good state of target {self.target!r} at {self.location}: "
                f"{', '.join(missing)} not found. Nothing was saved; the previous last good state is unchanged. "
                "Fix: save the artifacts of the run's target folder before they are cleaned."
            )
            raise StateStoreError(msg)
        checksums = {name: _sha256(Path(path)) for name, path in files.items()}
        with self._failures("save"):
            current = self._current_for_save()
            referenced = set() if current is None else {current.folder, *current.previous}
            saved_at = datetime.now(UTC)
            name = run_id
            if f"{RUNS}/{name}" in referenced:  # the same flow run saving again (a retry): a folder of its own
                name = f"{run_id}.{saved_at:%Y%m%dT%H%M%S%fZ}"[:128]
            folder = f"{RUNS}/{name}"
            run_key = f"{self.target}/{folder}"
            self._backend.remove_folder(run_key)  # what an interrupted save of this run left: no pointer names it
            try:
                for stored_name, path in files.items():
                    self._backend.put(Path(path), f"{run_key}/{stored_name}")
            except Exception:
                with contextlib.suppress(Exception):
                    self._backend.remove_folder(run_key)
                raise
            previous = () if current is None else (current.folder, *current.previous)
            pointer = _Pointer(
                run_id=run_id,
                folder=folder,
                saved_at=saved_at,
                files=tuple(files),
                sha256=checksums,
                metadata=dict(metadata),
                previous=tuple(dict.fromkeys(item for item in previous if item != folder))[: KEEP_RUNS - 1],
            )
            self._backend.replace(self._pointer_key, pointer.to_json(self.target))
        self._prune(keep={pointer.folder, *pointer.previous})

    def _current_for_save(self) -> _Pointer | None:
        """The pointer a save replaces; a damaged one is replaced too (with a warning), not an obstacle."""
        try:
            return self._read_pointer()
        except StateStoreError as error:
            self._logger.warning("%s Saving a new last good state replaces it.", error)
            return None

    def _prune(self, keep: set[str]) -> None:
        """Delete the run folders no pointer keeps: saves older than the 3 most recent, interrupted saves."""
        try:
            with self._failures("clean up old runs of"):
                for name in self._backend.folders(f"{self.target}/{RUNS}"):
                    if f"{RUNS}/{name}" not in keep:
                        self._backend.remove_folder(f"{self.target}/{RUNS}/{name}")
        except StateStoreError as error:
            self._logger.warning("%s The new last good state is saved; old runs stay until the next save.", error)

    # --- fetch

    def fetch(self, into: Path) -> LastGoodState | None:
        """Download the target's last good state into the local folder `into`; None when it has none yet.

        `into` is created if needed; the state's files replace those of the same names, and the dbt
        artifacts (ARTIFACTS) the state does not hold are removed from it, so that `into` is that state
        alone. Raises StateStoreError when the store cannot be read or the pointer names missing files.
        """
        with self._failures("fetch"):
            pointer = self._read_pointer()
            for _attempt in range(3):
                if pointer is None:
                    self._backend.check_reachable()
                    return None
                try:
                    return self._download(pointer, into)
                except _MissingFileError as missing:
                    # A save may have moved the pointer, and pruned the run it named, since it was read.
                    latest = self._read_pointer()
                    if latest == pointer:
                        raise StateStoreError(self._missing_message(pointer, missing.key)) from None
                    pointer = latest
            msg = f"The last good state of target {self.target!r} at {self.location} changed during 3 fetches."
            raise StateStoreError(msg + " Fix: run again once the target's runs are over.")

    def _download(self, pointer: _Pointer, into: Path) -> LastGoodState:
        into.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".state-", dir=into))
        try:
            for name in pointer.files:
                key = f"{self.target}/{pointer.folder}/{name}"
                try:
                    self._backend.get(key, staging / name)
                except FileNotFoundError:
                    raise _MissingFileError(key) from None
                expected = pointer.sha256.get(name)
                if expected is not None and _sha256(staging / name) != expected:
                    msg = (
                        f"The last good state of target {self.target!r} at {self.location} is damaged: "
                        f"{self._backend.url(key)} does not match the checksum its pointer recorded. "
                        f"Fix: {self._reset_fix()}"
                    )
                    raise StateStoreError(msg)
            for name in (*ARTIFACTS, *pointer.files):
                if name not in pointer.files:
                    (into / name).unlink(missing_ok=True)
            for name in pointer.files:
                (staging / name).replace(into / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return LastGoodState(
            run_id=pointer.run_id,
            saved_at=pointer.saved_at,
            files=pointer.files,
            metadata=pointer.metadata,
            path=into,
        )

    # --- the pointer, and what goes wrong

    @property
    def _pointer_key(self) -> str:
        return f"{self.target}/{POINTER}"

    def _read_pointer(self) -> _Pointer | None:
        data = self._backend.read(self._pointer_key)
        if data is None:
            return None
        try:
            return _Pointer.from_json(data)
        except ValueError as error:
            msg = (
                f"The last good state of target {self.target!r} at {self.location} is unreadable: "
                f"{self._backend.url(self._pointer_key)}: {error}. Fix: {self._reset_fix()}"
            )
            raise StateStoreError(msg) from None

    def _reset_fix(self) -> str:
        return (
            f"delete {self._backend.url(self._pointer_key)}: the target then has no last good state, "
            "and its next successful run saves a new one."
        )

    def _missing_message(self, pointer: _Pointer, key: str) -> str:
        return (
            f"The last good state of target {self.target!r} at {self.location} is incomplete: "
            f"{self._backend.url(self._pointer_key)} names run {pointer.run_id} "
            f"({pointer.saved_at:%Y-%m-%d %H:%M} UTC), but {self._backend.url(key)} does not exist "
            "(deleted by hand, or by a lifecycle rule?). "
            f"Fix: {self._reset_fix()}"
        )

    @contextlib.contextmanager
    def _failures(self, action: str) -> Iterator[None]:
        """Turn any failure of the store into one StateStoreError naming the location and the fix."""
        try:
            yield
        except StateStoreError:
            raise
        except Exception as error:
            what, fix = self._explain(error)
            msg = f"Could not {action} the last good state of target {self.target!r} at {self.location}: {what}."
            msg += f" Fix: {fix}."
            raise StateStoreError(_scrubbed(msg, self._secrets)) from None

    def _explain(self, error: Exception) -> tuple[str, str]:
        """What went wrong, in words, and what to do: from the error's kind, never quoting credentials."""
        from_google_auth = type(error).__module__.startswith("google.auth") or any(
            type(cause).__module__.startswith("google.auth") for cause in (error.__cause__, error.__context__)
        )
        reason = type(error).__name__ if from_google_auth else _reason(error)
        text, code = str(error), getattr(error, "code", None)  # gcsfs's HttpError carries the HTTP status
        bucket = self._bucket()
        if isinstance(error, _OpenError):
            return (
                f"its client refused the storage options: the credentials are unusable ({error})",
                "check the credentials the pipeline uses for it (the gcp-credentials block, or "
                "GOOGLE_APPLICATION_CREDENTIALS): a service-account key as Google issued it",
            )
        if from_google_auth or code == 401 or "Invalid Credentials" in text:
            return (
                f"the credentials were refused or are unusable ({reason})",
                "check the credentials the pipeline uses for it (the gcp-credentials block, or "
                "GOOGLE_APPLICATION_CREDENTIALS) and that they can read and write the store",
            )
        if isinstance(error, PermissionError) or code == 403 or text.startswith("Forbidden"):
            grant = f" (on GCS: roles/storage.objectAdmin on gs://{bucket})" if bucket else ""
            return (
                f"permission denied ({reason})",
                f"give the identity the pipeline runs as read and write access to it{grant}, "
                "or set state_store in the environments file to a location it can write",
            )
        if isinstance(error, FileNotFoundError):
            return (
                f"the bucket gs://{bucket} does not exist ({reason})" if bucket else f"it does not exist ({reason})",
                (f"create the bucket gs://{bucket}" if bucket else "create it")
                + ", or correct state_store in the environments file",
            )
        if isinstance(error, TimeoutError):
            return (
                f"no answer within {self._timeout:g} s",
                "check the network and the store's endpoint, then run again",
            )
        if isinstance(error, ImportError):
            return (
                f"its client library is missing ({reason})",
                "install the project's dependencies (uv sync)",
            )
        if self._url is None and isinstance(error, OSError):
            return (
                f"the folder cannot be written or read ({reason})",
                f"make {self.location} a folder the user running the flows can write, "
                "or set state_store in the environments file to another location",
            )
        if isinstance(error, OSError) or "Connect" in type(error).__name__:
            return (
                f"the store is unreachable or failed ({reason})",
                "check the network, the store's endpoint and state_store in the environments file, then run again",
            )
        return (
            f"{reason}",
            "check state_store in the environments file and the credentials the pipeline uses for it",
        )

    def _bucket(self) -> str | None:
        match = _URL.match(self.location)
        if match is None or match.group(1).lower() not in ("gs", "gcs"):
            return None
        return match.group(3).split("/", 1)[0] or None


def _reason(error: BaseException) -> str:
    """The error's class and first line, trimmed."""
    text = " ".join(str(error).split())
    if len(text) > _MAX_REASON:
        text = text[: _MAX_REASON - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _secret_values(options: Mapping[str, Any], secret: bool = False) -> Iterator[str]:
    """The strings of `options` that may be credentials: under a key such as token, key or password
    (a service-account info dict under `token`: all of it), and each long line of a multi-line one."""
    for key, value in options.items():
        inside = secret or _SECRET_KEY.search(str(key)) is not None
        if isinstance(value, str) and inside and len(value) >= _MIN_SECRET_LENGTH:
            yield value
            yield from (line.strip() for line in value.splitlines() if len(line.strip()) >= 16)
        elif isinstance(value, Mapping):
            yield from _secret_values(value, inside)


def _scrubbed(message: str, secrets: tuple[str, ...]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
    return message
