"""The BigQuery production path end to end, offline: setup, blocks, the flow, dbt-bigquery, a service account.

Test doubles stand in for Google, whose endpoints cannot be reached from here:

- BigQuery itself is **bqemulator** (``tests.emulators``), reached through the environment's
  ``api_endpoint``; its known gaps are listed in ``tests/emulators/bigquery.py``.
- Google's OAuth token endpoint is a tiny HTTP server of this module, on loopback, named as the
  ``token_uri`` of a service-account key made with a freshly generated RSA key. It checks nothing
  but records each request, so the tests can verify that the JWT assertion was signed with the key.
- BigQuery's bytes-billed limit, which the emulator ignores, is applied by a proxy in front of it
  (``tests.emulators.billing``) for the cost-guard test only.

Everything else is the production code: ``python -m infrastructure.setup_profiles`` creates the
``gcp-credentials``, ``bigquery-target-configs-bq`` and ``dbt-cli-profile-bq`` blocks on a real Prefect
server, and ``python prefect_flows/pipeline.py --target bq`` loads them and runs dbt-bigquery with
``method: service-account-json``. One pipeline run (module scope) serves several tests.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from prefect.settings import PREFECT_API_URL, temporary_settings

from dbt_pipeline.blocks import load_profile_data
from dbt_pipeline.environments import DEFAULT_ENVIRONMENTS_FILE, BigQueryEnvironment, load_environments
from dbt_pipeline.profiles import profile_outputs
from dbt_pipeline.state_store import StateStore
from tests.conftest import REPO, Workspace, copy_example_project, make_workspace
from tests.emulators import BigQueryEmulator, GcsEmulator, unique_bucket, unique_dataset
from tests.emulators.bigquery import add_catalog_macros
from tests.emulators.billing import MINIMUM_BILLED_PER_TABLE, billing_proxy
from tests.loopback import TokenEndpoint, serving
from tests.prefect_api import all_task_runs, flow_run_name, step_runs

TARGET = "bq"
#: 10 GiB: the cost guard the environment declares (the emulator bills nothing, so it never trips).
MAXIMUM_BYTES_BILLED = 10 * 1024**3
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_ENDPOINT = "https://oauth2.googleapis.com/token"
#: Rows of the example project's seeds, i.e. of the marts built one row per seed row.
EXPECTED_ROWS = {"customers": 150, "orders": 800, "order_items": 2054, "products_snapshot": 60}


# -- a stand-in for Google's OAuth token endpoint ------------------------------------------------------


@pytest.fixture(scope="module")
def token_endpoint() -> Iterator[TokenEndpoint]:
    """A fake of Google's OAuth token endpoint (unreachable from here), served from a thread on loopback."""
    with serving(TokenEndpoint(), "fake-google-token-endpoint") as server:
        yield server


# -- the module's workspace and its one pipeline run ---------------------------------------------------


@dataclass
class ServiceAccountKey:
    path: Path
    info: dict[str, Any]
    public_key: rsa.RSAPublicKey
    marker: str  # a line from the middle of the PEM private key: it must never leak


@dataclass
class BigQueryRun:
    """The workspace set up for target `bq` on the emulator, and the outputs of its commands."""

    workspace: Workspace
    dbt_project: Path
    emulator: BigQueryEmulator
    dataset: str
    key: ServiceAccountKey
    setup_output: str
    first_run_output: str
    state_store: str  # the target's gs:// state store, on the GCS emulator

    def count(self, sql_from: str) -> int:
        """``select count(*)`` through google-cloud-bigquery, on the emulator."""
        query = f"select count(*) from {sql_from}"
        return int(next(iter(self.emulator.client().query(query).result()))[0])

    def table(self, name: str) -> str:
        return f"`{self.emulator.project}.{self.dataset}.{name}`"


def _service_account_key(directory: Path, project: str, token_uri: str) -> ServiceAccountKey:
    """A service-account key file made with a freshly generated RSA key (as in test_setup_profiles.py)."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info: dict[str, Any] = {
        "type": "service_account", "project_id": project, "private_key_id": "k1", "private_key": pem,
        "client_email": f"dbt@{project}.iam.gserviceaccount.com", "client_id": "1", "token_uri": token_uri,
    }  # fmt: skip
    path = directory / "service-account-key.json"
    path.write_text(json.dumps(info), encoding="utf-8")
    return ServiceAccountKey(path, info, private_key.public_key(), pem.splitlines()[5])


@pytest.fixture(scope="module")
def bigquery_run(
    tmp_path_factory: pytest.TempPathFactory,
    prefect_api: str,
    prefect_home: Path,
    bigquery_emulator: BigQueryEmulator,
    gcs_emulator: GcsEmulator,
    token_endpoint: TokenEndpoint,
) -> BigQueryRun:
    """Setup then one full pipeline run on target `bq`, shared by the tests of this module.

    The same workspace as conftest's `workspace` fixture (its fixtures are per test, this one is per
    module so that the pipeline runs once): a copy of the example project, a private TMPDIR, the
    session's Prefect server.
    """
    root = tmp_path_factory.mktemp("bigquery")
    dbt_project = copy_example_project(root / "dbt")
    workspace = make_workspace(root, prefect_api, prefect_home)
    # Nothing but the environments file may point at the emulator, a project or a key.
    for name in ("BIGQUERY_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS"):
        workspace.env.pop(name, None)
    assert bigquery_emulator.project is not None
    assert bigquery_emulator.endpoint is not None
    key = _service_account_key(root, bigquery_emulator.project, token_endpoint.url)
    dataset = unique_dataset("pipeline")
    # The last good state goes to a bucket, read with the target's own key (gcsfs, on the GCS emulator).
    state_store = f"gs://{gcs_emulator.create_bucket(unique_bucket('dbt-state'))}/state"
    workspace.env["STORAGE_EMULATOR_HOST"] = gcs_emulator.storage_options()["endpoint_url"]
    workspace.write_environments(
        {
            "defaults": {"dbt_project_dir": str(dbt_project)},
            "environments": {
                TARGET: {
                    "adapter": "bigquery",
                    "project": bigquery_emulator.project,
                    "dataset": dataset,
                    "location": "US",
                    "threads": 4,
                    "maximum_bytes_billed": MAXIMUM_BYTES_BILLED,
                    "api_endpoint": bigquery_emulator.endpoint,
                    "state_store": state_store,
                }
            },
        }
    )
    workspace.env["GOOGLE_APPLICATION_CREDENTIALS"] = str(key.path)

    setup = workspace.setup()
    add_catalog_macros(dbt_project)  # `dbt docs generate` on the emulator only (no __TABLES__ there)
    result = workspace.pipeline("--target", TARGET)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return BigQueryRun(
        workspace, dbt_project, bigquery_emulator, dataset, key, setup.stdout + setup.stderr, output, state_store
    )


@pytest.fixture(scope="module")
def second_run(bigquery_run: BigQueryRun) -> str:
    """A second pipeline run of `orders` only, after the first: the incremental model merges."""
    result = bigquery_run.workspace.pipeline("--target", TARGET, "--select", "orders")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def _jwt_part(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# -- the tests ------------------------------------------------------------------------------------------


def test_setup_and_pipeline_build_the_example_project_on_bigquery_with_a_service_account(
    bigquery_run: BigQueryRun, token_endpoint: TokenEndpoint
) -> None:
    """Setup creates the three BigQuery blocks from a service-account key, and the pipeline on that target seeds,
    snapshots, builds, tests and documents the example project in BigQuery (the bqemulator test double), signing in
    as the service account at Google's token endpoint (faked on loopback: Google cannot be reached here)."""
    for name in ("gcp-credentials", f"bigquery-target-configs-{TARGET}", f"dbt-cli-profile-{TARGET}"):
        assert re.search(rf"^\s*created\s+{re.escape(name)}\b", bigquery_run.setup_output, re.MULTILINE), (
            bigquery_run.setup_output
        )

    # dbt authenticated as the service account: a JWT assertion signed with the key, for an access token.
    assert token_endpoint.requests, "dbt never asked the token endpoint for an access token"
    scopes = []
    for form in token_endpoint.requests:
        assert form["grant_type"] == JWT_BEARER_GRANT
        header, payload, signature = form["assertion"].split(".")
        bigquery_run.key.public_key.verify(
            _jwt_part(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        claims = json.loads(_jwt_part(payload))
        # google-auth always addresses the assertion to Google's token endpoint, whatever the key's token_uri.
        assert (claims["iss"], claims["aud"]) == (bigquery_run.key.info["client_email"], GOOGLE_TOKEN_ENDPOINT)
        # dbt signs in for BigQuery; the state store (gcsfs, the last good state's bucket) for Cloud Storage.
        scopes.append(claims["scope"])
    assert all("bigquery" in scope or "devstorage" in scope for scope in scopes), scopes
    assert any("bigquery" in scope for scope in scopes), scopes

    for table, rows in EXPECTED_ROWS.items():
        assert bigquery_run.count(bigquery_run.table(table)) == rows, table

    target_dir = bigquery_run.dbt_project / "target" / TARGET
    manifest = json.loads((target_dir / "manifest.json").read_text())
    models = {node["name"] for node in manifest["nodes"].values() if node["resource_type"] == "model"}
    assert len(models) >= 25
    run_dir = target_dir / "runs" / flow_run_name(bigquery_run.first_run_output)
    nodes = json.loads((run_dir / "nodes.json").read_text())
    reported = {row["node"]: row["status"] for row in nodes if row["type"] == "model"}
    assert reported == dict.fromkeys(models, "success")
    built = [row for row in nodes if row["step"] != "source-freshness"]  # on an empty dataset: not checked yet
    assert not [row for row in built if row["status"] not in ("success", "pass")], "every node succeeded or passed"
    assert "dbt run succeeded" in (run_dir / "report.md").read_text()
    assert (run_dir / "docs" / "catalog.json").is_file()


def test_second_run_merges_the_incremental_orders_without_duplicates(
    bigquery_run: BigQueryRun, second_run: str
) -> None:
    """Running the pipeline again merges the incremental `orders` model into its table: still 800 orders, each once."""
    run_dir = bigquery_run.dbt_project / "target" / TARGET / "runs" / flow_run_name(second_run)
    nodes = {row["node"]: row for row in json.loads((run_dir / "nodes.json").read_text()) if row["type"] == "model"}
    assert list(nodes) == ["orders"]
    assert nodes["orders"]["status"] == "success"
    executed = bigquery_run.dbt_project / "target" / TARGET / "run" / "shop_analytics" / "models" / "marts"
    assert "merge into" in (executed / "orders.sql").read_text().lower(), "the second run must be an incremental merge"

    orders = bigquery_run.table("orders")
    assert bigquery_run.count(orders) == EXPECTED_ROWS["orders"]
    assert bigquery_run.count(f"(select distinct order_id from {orders})") == EXPECTED_ROWS["orders"]


def test_emulator_workarounds_never_reach_production() -> None:
    """The shipped project, code and environments file know nothing of the emulator: no catalog override, no
    endpoint but the optional `api_endpoint` setting and its rendering, and none set for prod."""
    shipped_project = REPO / "dbt"
    for path in shipped_project.rglob("*"):
        if path.is_file() and not {"target", "logs", "dbt_packages"} & set(path.relative_to(shipped_project).parts):
            text = path.read_text(encoding="utf-8", errors="replace")
            assert "get_catalog" not in text, path
            assert "bigquery_emulator_catalog" not in text, path

    pattern = re.compile(r"emulat|api_endpoint|bqemu", re.IGNORECASE)
    mentions: dict[str, list[str]] = {}
    for folder in ("dbt_pipeline", "prefect_flows", "infrastructure"):
        for path in sorted((REPO / folder).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or ".terraform" in path.parts:
                continue
            lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
            if found := [line for line in lines if pattern.search(line)]:
                mentions[str(path.relative_to(REPO))] = found
    assert mentions == {
        # The BigQuery environment's optional setting, documented as unset in production, and its
        # rendering into the target configs, only when it is set.
        "dbt_pipeline/adapters/bigquery.py": [
            "api_endpoint: str | None = Field(",
            'description="Another BigQuery API endpoint, e.g. a local emulator in tests; unset in production.",',
            "if self.api_endpoint is not None:",
            'extras["api_endpoint"] = self.api_endpoint',
        ],
        # The state store's documentation of gcsfs's own endpoint option (nothing sets it but the caller).
        "dbt_pipeline/state_store.py": [
            'an emulator, `{"endpoint_url": "http://127.0.0.1:<port>", "token": "anon"}`. `timeout` bounds each'
        ],
    }

    shipped = yaml.safe_load(DEFAULT_ENVIRONMENTS_FILE.read_text(encoding="utf-8"))
    assert "api_endpoint" not in shipped["environments"]["prod"]
    prod = load_environments(DEFAULT_ENVIRONMENTS_FILE).get("prod")
    assert isinstance(prod, BigQueryEnvironment)
    assert prod.api_endpoint is None


def test_cost_guard_reaches_the_dbt_profile_of_a_run(bigquery_run: BigQueryRun, prefect_api: str) -> None:
    """The environment's `maximum_bytes_billed` is in the profile the flow renders from the block, and dbt-bigquery
    takes it as the limit it sets on each query job (the emulator bills nothing, so it cannot trip it here)."""
    from dbt.adapters.bigquery.credentials import BigQueryCredentials

    with temporary_settings({PREFECT_API_URL: prefect_api}):
        data = load_profile_data(f"dbt-cli-profile-{TARGET}", target=TARGET)
    outputs = profile_outputs(data["target_configs"])
    assert outputs["maximum_bytes_billed"] == MAXIMUM_BYTES_BILLED
    assert (outputs["type"], outputs["method"]) == ("bigquery", "service-account-json")

    # As dbt reads a profile's output: `type` picks the adapter, `threads` is the profile's.
    fields = {key: value for key, value in outputs.items() if key not in ("type", "threads")}
    credentials = BigQueryCredentials.from_dict(BigQueryCredentials.translate_aliases(fields))
    assert credentials.maximum_bytes_billed == MAXIMUM_BYTES_BILLED

    local = yaml.safe_load((bigquery_run.dbt_project / "profiles.yml").read_text())
    assert local["shop_analytics"]["outputs"][TARGET]["maximum_bytes_billed"] == MAXIMUM_BYTES_BILLED


def _add_target(run: BigQueryRun, name: str, **settings: object) -> None:
    """Declare target `name` as a copy of `bq` with `settings`, and create its blocks."""
    document = yaml.safe_load(run.workspace.environments_file.read_text())
    document["environments"][name] = {**document["environments"][TARGET], **settings}
    run.workspace.write_environments(document)
    run.workspace.setup("--blocks-only", "--target", name)


def test_cost_guard_stops_a_query_over_the_limit_once_and_names_it(bigquery_run: BigQueryRun) -> None:
    """A target whose maximum_bytes_billed is below what BigQuery bills for a model: the limit reaches the query
    job, BigQuery's refusal fails the run with the cost guard named, and the step is not retried.

    The refusal comes from tests.emulators.billing, a proxy in front of the emulator that applies BigQuery's
    bytes-billed limit (the emulator ignores it; Google's BigQuery cannot be reached from here)."""
    limit = 1_000_000  # 1 MB: below the 10 MB BigQuery bills at least for each table a query reads
    assert bigquery_run.emulator.endpoint is not None
    with billing_proxy(bigquery_run.emulator.endpoint) as proxy:
        _add_target(bigquery_run, "bq-guarded", maximum_bytes_billed=limit, api_endpoint=proxy.url)
        result = bigquery_run.workspace.pipeline(
            "--target", "bq-guarded", "--select", "customers", "--retries", "2", "--retry-delay", "0"
        )

    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    assert proxy.limits, "no query job reached BigQuery"
    assert set(proxy.limits) == {limit}, "every query job carries the target's limit"
    needed = f"Query exceeded limit for bytes billed: {limit}. {MINIMUM_BILLED_PER_TABLE} or higher required."
    assert needed in result.stderr
    assert "model.shop_analytics.customers (error)" in result.stderr
    assert "Cost guard: BigQuery refused a query that would bill more than the target's maximum_bytes_billed" in (
        result.stderr
    )
    runs = step_runs(all_task_runs(bigquery_run.workspace.env["PREFECT_API_URL"], output))
    run_step = next(run for run in runs if run.name.startswith("dbt-run"))
    assert run_step.run_count == 1, "a query over the cost guard is not worth a retry"


def test_doctor_checks_a_bigquery_target_and_gives_up_on_a_silent_endpoint(bigquery_run: BigQueryRun) -> None:
    """The doctor passes every check of the emulator target; on an endpoint that accepts connections but never
    answers (dbt-bigquery would retry for 10 minutes), the warehouse check fails after --timeout, and the
    rendered profile, which holds the key, is removed all the same."""
    ready = bigquery_run.workspace.doctor("--target", TARGET)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert f"`dbt debug --connection --target {TARGET}` answers" in ready.stdout

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the backlog; nothing ever reads or answers them
        _add_target(bigquery_run, "bq-silent", api_endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}")
        # As a process: what it leaves behind (dbt-bigquery's request, blocked on the silent socket) goes with it.
        result = bigquery_run.workspace.doctor("--target", "bq-silent", "--timeout", "5", process=True)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert re.search(r"\[FAIL\] warehouse\s+`dbt debug --connection` got no answer within 5 s", output), output
    assert "fix: check the network between this machine and the warehouse" in output
    assert "Traceback" not in output
    assert bigquery_run.key.marker not in output
    assert not list((bigquery_run.workspace.root / "tmp").glob("dbt-profiles-*")), "the rendered profile is removed"


def test_private_key_never_leaks_from_setup_or_runs(bigquery_run: BigQueryRun, second_run: str) -> None:
    """After setup and two runs, the private key is in no command output, no dbt artifact or log, and not in the
    local profiles.yml (which names the key file); the profile rendered for each run is gone."""
    marker = bigquery_run.key.marker
    for output in (bigquery_run.setup_output, bigquery_run.first_run_output, second_run):
        assert marker not in output

    project = bigquery_run.dbt_project
    scanned = [path for folder in ("target", "logs") for path in (project / folder).rglob("*") if path.is_file()]
    assert len(scanned) > 10, "the runs wrote artifacts and logs"
    assert (project / "logs" / "dbt.log").is_file()
    for path in scanned:
        assert marker.encode() not in path.read_bytes(), path

    profiles = (project / "profiles.yml").read_text()
    assert marker not in profiles
    output = yaml.safe_load(profiles)["shop_analytics"]["outputs"][TARGET]
    assert (output["method"], output["keyfile"]) == ("service-account", str(bigquery_run.key.path))

    assert not list((bigquery_run.workspace.root / "tmp").glob("dbt-profiles-*")), "the rendered profile is removed"


def test_a_ci_target_compared_with_the_bucket_state_builds_and_reads_nothing_unchanged(
    bigquery_run: BigQueryRun, gcs_emulator: GcsEmulator, tmp_path: Path
) -> None:
    """The full run's last good state is in the target's gs:// store; a CI target compared with it
    (`--state-from bq`), nothing changed, builds no node and starts no query job that reads a table: the
    freshness step takes each source's age from its metadata (tables.get), as dbt does on BigQuery for a source
    without `loaded_at_field`, which the example project leaves out on BigQuery.

    The jobs are counted by tests.emulators.billing, a proxy in front of the emulator (limit high enough
    to let every job through); the bucket is gcp-storage-emulator's (Google's endpoints cannot be reached)."""
    state = StateStore.at(bigquery_run.state_store, TARGET, storage_options=gcs_emulator.storage_options()).fetch(
        tmp_path / "state"
    )
    assert state is not None
    assert state.run_id == flow_run_name(bigquery_run.first_run_output)
    assert bigquery_run.emulator.endpoint is not None
    with billing_proxy(bigquery_run.emulator.endpoint) as proxy:
        _add_target(bigquery_run, "bq-ci", api_endpoint=proxy.url)
        result = bigquery_run.workspace.pipeline("--target", "bq-ci", "--state-from", TARGET)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"Comparing with the last good state of target '{TARGET}'" in output
    run_dir = bigquery_run.dbt_project / "target" / "bq-ci" / "runs" / flow_run_name(output)
    built = [path.name for path in run_dir.glob("*.run_results.json") if json.loads(path.read_text())["results"]]
    assert built == [], built
    manifest = json.loads((bigquery_run.dbt_project / "target" / "bq-ci" / "manifest.json").read_text())
    models = {node["alias"] for node in manifest["nodes"].values() if node["resource_type"] == "model"}
    # Each job's SQL without dbt's query comment (a JSON header naming the node, e.g. source shop.customers).
    sql = [re.sub(r"/\*.*?\*/", " ", query, flags=re.DOTALL) for query in proxy.queries]
    assert not [query for query in sql if re.search(r"\bfrom\b", query, re.IGNORECASE)], sql
    named = {word for query in sql for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query)}
    assert not named & models, named & models
    fresh = {node["identifier"] for node in manifest["sources"].values() if node["config"].get("freshness")}
    assert fresh, "the example project declares freshness"
    assert fresh <= set(proxy.tables_read), f"freshness read from metadata: {sorted(set(proxy.tables_read))}"
    assert "create or replace" not in " ".join(proxy.queries).lower()
    report = (run_dir / "report.md").read_text()
    assert report.startswith("# dbt run succeeded"), report[:200]
    assert f"fresh: {len(fresh)}" in report, "every source's age read from its metadata"
