#!/usr/bin/env bash
# Install the offline BigQuery test double (bqemulator: BigQuery's REST API on loopback, backed by
# DuckDB) into a virtualenv of its own, and print the path of its `bqemulator` executable.
#
#   .ci/install-bqemulator.sh [DIR]      DIR defaults to $HOME/.cache/dbt-prefect-pipeline/bqemulator
#
# Needs Python >= 3.11 (or $PYTHON) with pip, and PyPI: nothing else is downloaded. Idempotent: a
# second run with the same pins only checks a stamp and prints the path. Progress goes to stderr;
# stdout carries the executable path alone, so callers can do EMU="$(.ci/install-bqemulator.sh)".
#
# Why its own venv: bqemulator pins duckdb 1.5.x while the project uses duckdb 2.x, and it needs
# DuckDB's `spatial` extension, which it would otherwise `INSTALL` from the internet at every start.
# The extension comes from the PyPI wheel `duckdb-extension-spatial` and is installed, with DuckDB's
# own `INSTALL '<file>'`, into DIR/duckdb-home/.duckdb/extensions/v<duckdb>/<platform>/. A process
# whose HOME holds a `.duckdb/extensions` pointing there (tests/emulators/bigquery.py links one
# into each emulator's temporary HOME) finds it, and the emulator's `INSTALL spatial` is a no-op.
set -euo pipefail

DIR="${1:-${HOME}/.cache/dbt-prefect-pipeline/bqemulator}"
DUCKDB_HOME="${DIR}/duckdb-home"
STAMP="${DIR}/.bqemulator-installed"

# What we install. numpy is not declared by bqemulator but DuckDB needs it for the Python UDFs the
# emulator registers at start ("'numpy' is required for this operation").
REQUIREMENTS="bqemulator==1.4.0
duckdb==1.5.5
duckdb-extension-spatial==1.5.5
numpy==2.4.6"

# Every transitive dependency, as resolved on Linux / Python 3.11 (pip freeze --all of a working
# install): the emulator must not change under us when one of its unpinned dependencies releases.
CONSTRAINTS="alembic==1.20.1
annotated-doc==0.0.7
annotated-types==0.8.0
anyio==4.16.0
asgiref==3.13.0
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
click==8.5.1
cryptography==50.0.2
fastapi==0.165.0
fastavro==1.13.1
google-api-core==2.44.0
google-auth==2.63.0
google-cloud-bigquery-storage==2.43.0
googleapis-common-protos==1.76.0
grpcio==1.85.3
grpcio-health-checking==1.80.1
grpcio-status==1.85.3
grpcio-tools==1.80.1
h11==0.16.0
httpcore==1.0.9
httptools==0.9.0
httpx==0.28.1
idna==3.20
mako==1.4.3
markupsafe==3.0.4
opentelemetry-api==1.45.2
opentelemetry-exporter-http-transport==0.66b2
opentelemetry-exporter-otlp==1.45.2
opentelemetry-exporter-otlp-common==0.66b2
opentelemetry-exporter-otlp-proto-common==1.45.2
opentelemetry-exporter-otlp-proto-grpc==1.45.2
opentelemetry-exporter-otlp-proto-http==1.45.2
opentelemetry-instrumentation==0.66b2
opentelemetry-instrumentation-asgi==0.66b2
opentelemetry-instrumentation-fastapi==0.66b2
opentelemetry-instrumentation-grpc==0.66b2
opentelemetry-proto==1.45.2
opentelemetry-sdk==1.45.2
opentelemetry-semantic-conventions==0.66b2
opentelemetry-util-http==0.66b2
orjson==3.13.0
packaging==26.4
prometheus-client==0.26.0
proto-plus==1.29.0
protobuf==6.33.6
pyarrow==26.0.1
pyasn1==0.6.5
pyasn1-modules==0.4.2
pycparser==3.12
pydantic==2.14.4
pydantic-core==2.50.5
pydantic-settings==2.16.3
pyjwt==2.15.1
python-dotenv==1.2.4
pytz==2026.6
pyyaml==6.0.4
requests==2.34.2
setuptools==84.2.1
sqlalchemy==2.1.9
sqlglot==30.11.0
starlette==1.10.0
structlog==26.1.0
typing-extensions==4.16.0
typing-inspection==0.4.5
urllib3==2.8.0
uvicorn==0.54.0
uvloop==0.23.0
watchfiles==1.3.0
websockets==17.4
wrapt==2.5.2"

log() { printf '[install-bqemulator] %s\n' "$*" >&2; }

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3 python; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

PYTHON_BIN="$(find_python)" || { log "error: Python >= 3.11 not found (set PYTHON=/path/to/python3.11)"; exit 1; }
PY_VERSION="$("$PYTHON_BIN" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# The stamp: what was installed, with which Python. Same stamp, same install: nothing to do.
FINGERPRINT="$(printf '%s\n--\n%s\n--\npython %s\n' "$REQUIREMENTS" "$CONSTRAINTS" "$PY_VERSION" | "$PYTHON_BIN" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
EXECUTABLE="${DIR}/bin/bqemulator"

# Refuse to turn a folder that holds something else into a venv.
if [ -d "$DIR" ] && [ ! -e "${DIR}/pyvenv.cfg" ]; then
    for entry in "$DIR"/* "$DIR"/.[!.]*; do
        [ -e "$entry" ] || continue
        case "${entry##*/}" in
            .install.lock | .bqemulator-installed | duckdb-home) ;;
            *)
                log "error: ${DIR} exists, is not empty and is not a venv: choose another DIR"
                exit 1
                ;;
        esac
    done
fi
mkdir -p "$DIR"
# Two sessions installing at once (pytest-xdist, parallel CI jobs) wait for each other.
if command -v flock >/dev/null 2>&1; then
    exec 9>"${DIR}/.install.lock"
    flock 9
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$FINGERPRINT" ] && [ -x "$EXECUTABLE" ] \
    && compgen -G "${DUCKDB_HOME}/.duckdb/extensions/v*/*/spatial.duckdb_extension" >/dev/null; then
    log "up to date in ${DIR}"
    printf '%s\n' "$EXECUTABLE"
    exit 0
fi

if [ -e "${DIR}/pyvenv.cfg" ] && ! "${DIR}/bin/python" -c 'import sys; sys.exit(0 if "%d.%d" % sys.version_info[:2] == "'"$PY_VERSION"'" else 1)' 2>/dev/null; then
    log "the venv in ${DIR} is broken or of another Python: recreating it"
    rm -rf "${DIR:?}/bin" "${DIR:?}/lib" "${DIR:?}/lib64" "${DIR:?}/include" "${DIR:?}/pyvenv.cfg" "${DIR:?}/share"
fi
if [ ! -e "${DIR}/pyvenv.cfg" ]; then
    log "creating a venv in ${DIR} with ${PYTHON_BIN} (Python ${PY_VERSION})"
    "$PYTHON_BIN" -m venv "$DIR"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
printf '%s\n' "$REQUIREMENTS" >"${WORK}/requirements.txt"
printf '%s\n' "$CONSTRAINTS" >"${WORK}/constraints.txt"

log "installing bqemulator and its pinned dependencies (PyPI)"
"${DIR}/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "${WORK}/requirements.txt" -c "${WORK}/constraints.txt"

# Install the spatial extension the wheel ships into DuckDB's extension directory under
# DIR/duckdb-home, with DuckDB's own INSTALL (it picks the version/platform sub-directory), after
# removing what an older duckdb left there. Then check, with that HOME and no network, that a bare
# `INSTALL spatial; LOAD spatial` (what the emulator runs at start) succeeds.
log "installing DuckDB's spatial extension from the duckdb-extension-spatial wheel"
rm -rf "${DUCKDB_HOME}/.duckdb/extensions"
mkdir -p "${DUCKDB_HOME}"
HOME="$DUCKDB_HOME" "${DIR}/bin/python" - <<'PY'
import pathlib

import duckdb
import duckdb_extension_spatial

package = pathlib.Path(duckdb_extension_spatial.__file__).parent
files = sorted(package.glob(f"extensions/v{duckdb.__version__}/spatial.duckdb_extension"))
if not files:
    raise SystemExit(f"no spatial extension for duckdb {duckdb.__version__} in {package}")
connection = duckdb.connect()
connection.execute(f"INSTALL '{files[0]}'")
(path,) = connection.execute(
    "select install_path from duckdb_extensions() where extension_name = 'spatial'"
).fetchone()
print(f"[install-bqemulator] spatial extension: {path}", file=__import__("sys").stderr)
PY
HOME="$DUCKDB_HOME" "${DIR}/bin/python" -c '
import duckdb
connection = duckdb.connect()
connection.execute("INSTALL spatial")
connection.execute("LOAD spatial")
assert connection.execute("select ST_AsText(ST_Point(1, 2))").fetchone() == ("POINT (1 2)",)
'
"$EXECUTABLE" --version >&2

printf '%s\n' "$FINGERPRINT" >"$STAMP"
log "installed in ${DIR}"
printf '%s\n' "$EXECUTABLE"
