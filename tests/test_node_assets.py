"""The lineage of a real run in Prefect's events, and what a node's page shows after a real run.

One real run of the pipeline (`python prefect_flows/pipeline.py --mode build`, as a user types it) on a
small project against the session's Prefect server: a seed, a source, a view, an ephemeral model, a
table in a dbt group, a snapshot, tests, a model whose SQL is wrong, a model built on it (skipped), and
a model the project opts out of assets. The tests read what the server recorded: the asset events
(POST /api/events/filter, as the UI's event feed reads them), the task runs and their log lines.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId
from prefect.client.schemas.objects import FlowRun, Log, TaskRun

from prefect_flows.node_assets import asset_key
from tests.conftest import duckdb_environments, make_workspace
from tests.prefect_api import (
    PAGE,
    all_task_runs,
    node_runs,
    node_unique_id,
    prefect_client,
    read_flow_run,
    step_runs,
)

RECORDED_WITHIN = 60  # seconds for the server to persist the run's events (it does so every few seconds)
DB = "duckdb://dev/main"  # the relations of the run: DuckDB file dev.duckdb, schema main

PROJECT = {
    "dbt_project.yml": """
        name: lineage
        profile: lineage
        version: "1.0"
        config-version: 2
        on-run-start:
          # the table the source names, as a loader would have filled it
          - "create table if not exists {{ target.schema }}.app_events as select 1 as order_id, 'viewed' as kind"
    """,
    "seeds/raw_orders.csv": "id,customer,amount\n1,ann,10\n2,bob,20\n",
    "models/stg_orders.sql": "select id, customer, amount from {{ ref('raw_orders') }}\n",
    "models/orders_with_events.sql": (
        "select o.*, e.kind from {{ ref('stg_orders') }} o\n"
        "left join {{ source('app', 'events') }} e on e.order_id = o.id\n"
    ),
    "models/order_facts.sql": (
        "select customer, sum(amount) as revenue, count(kind) as events\n"
        "from {{ ref('orders_with_events') }} group by customer\n"
    ),
    "models/broken.sql": "select nope from {{ ref('stg_orders') }}\n",
    "models/after_broken.sql": "select * from {{ ref('broken') }}\n",
    "models/untracked.sql": "select 1 as id\n",
    "models/schema.yml": """
        groups:
          - name: finance
            owner: {name: Finance team, email: finance@example.com}
        sources:
          - name: app
            schema: main
            tables:
              - name: events
                identifier: app_events
                description: One row per thing a customer did in the app.
                config: {meta: {owner: app-team}}
        models:
          - name: stg_orders
            description: Orders, one row each, as the shop recorded them.
            config: {meta: {owner: data-eng}}
            columns:
              - name: id
                data_tests: [not_null, unique]
          - name: orders_with_events
            config: {materialized: ephemeral}
          - name: order_facts
            description: Revenue and app events per customer, for finance.
            config: {group: finance, materialized: table}
          - name: untracked
            config: {meta: {prefect: {enable_assets: false}}}
        snapshots:
          - name: orders_snapshot
            relation: ref('stg_orders')
            config: {unique_key: id, strategy: check, check_cols: all}
    """,
}

# The relations the run builds, each a materialization: seed, view, table (through an ephemeral model), snapshot.
BUILT = {
    "seed.lineage.raw_orders": f"{DB}/raw_orders",
    "model.lineage.stg_orders": f"{DB}/stg_orders",
    "model.lineage.order_facts": f"{DB}/order_facts",
    "snapshot.lineage.orders_snapshot": f"{DB}/orders_snapshot",
}
SOURCE = f"{DB}/app_events"
UPSTREAM = {
    f"{DB}/raw_orders": set(),
    f"{DB}/stg_orders": {f"{DB}/raw_orders"},
    f"{DB}/order_facts": {f"{DB}/stg_orders", SOURCE},  # the ephemeral model's own parents
    f"{DB}/orders_snapshot": {f"{DB}/stg_orders"},
}
NOT_MATERIALIZED = ["broken", "after_broken", "untracked", "orders_with_events", "not_null", "unique"]


@dataclass(frozen=True)
class Run:
    """The pipeline run, as the server recorded it."""

    flow_run: FlowRun
    nodes: dict[str, TaskRun]  # the build step's node runs, by unique id
    events: list[dict[str, Any]]  # every asset event related to the flow run
    prefect_api: str

    def materializations(self) -> dict[str, dict[str, Any]]:
        """The materialization events, by asset key (each key at most once: checked by a test)."""
        return {event["resource"]["prefect.resource.id"]: event for event in self.of("materialization.succeeded")}

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == f"prefect.asset.{kind}"]

    def page(self, unique_id: str) -> list[Log]:
        """The log lines on a node's page."""
        with prefect_client(self.prefect_api) as client:
            only_its_logs = LogFilter(task_run_id=LogFilterTaskRunId(any_=[self.nodes[unique_id].id]))
            return client.read_logs(log_filter=only_its_logs, limit=PAGE)


def _write_project(root: Path) -> Path:
    """PROJECT's files under `root` (their text dedented), as a user would have written them."""
    for name, text in PROJECT.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = text.splitlines()
        indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
        path.write_text("\n".join(line[indent:] for line in lines).strip() + "\n", encoding="utf-8")
    return root


def _asset_events(prefect_api: str, flow_run: FlowRun) -> list[dict[str, Any]]:
    """Every asset event the server has recorded for the flow run, through the events API, page by page."""
    query = {
        "filter": {"event": {"prefix": ["prefect.asset."]}, "related": {"id": [f"prefect.flow-run.{flow_run.id}"]}},
        "limit": 50,
    }
    with httpx.Client(timeout=30) as client:
        page = client.post(f"{prefect_api}/events/filter", json=query).raise_for_status().json()
        events: list[dict[str, Any]] = page["events"]
        while page.get("next_page"):
            page = client.get(page["next_page"]).raise_for_status().json()
            events += page["events"]
    return events


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, prefect_api: str, prefect_home: Path) -> Run:
    """The small project built once in build mode (it fails on `broken`), and what the server recorded."""
    root = tmp_path_factory.mktemp("lineage")
    project = _write_project(root / "project")
    workspace = make_workspace(root, prefect_api, prefect_home)
    workspace.write_environments(duckdb_environments(project, root / "warehouse" / "dev.duckdb", "dev"))
    workspace.setup("--blocks-only")
    result = workspace.pipeline("--mode", "build", "--retries", "0")
    assert result.returncode == 1, result.stderr[-3000:]  # `broken` fails the run
    output = result.stdout + result.stderr
    flow_run = read_flow_run(prefect_api, output)
    runs = all_task_runs(prefect_api, output)
    (build,) = (step for step in step_runs(runs) if step.name.startswith("dbt-build"))
    nodes = {node_unique_id(node): node for node in node_runs(runs, build)}
    deadline = time.monotonic() + RECORDED_WITHIN
    while True:  # the server persists the events it receives in batches
        events = _asset_events(prefect_api, flow_run)
        succeeded = {
            event["resource"]["prefect.resource.id"] for event in events if event["event"].endswith("succeeded")
        }
        if succeeded >= set(BUILT.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    return Run(flow_run, nodes, events, prefect_api)


def test_the_run_built_and_failed_what_the_project_says(run: Run) -> None:
    """The premise: every node ran as planned, `broken` failed and `after_broken` was skipped."""
    states = {node.name: node.state_name for node in run.nodes.values()}
    assert (states["broken"], states["after_broken"]) == ("Failed", "Cancelled")
    assert {states[unique_id.split(".")[-1]] for unique_id in BUILT} == {"Completed"}
    assert {state for name, state in states.items() if name.startswith(("not_null", "unique"))} == {"Completed"}


def test_each_built_model_seed_and_snapshot_is_one_materialization(run: Run) -> None:
    """One `prefect.asset.materialization.succeeded` per relation built, keyed as prefect-dbt keys it."""
    keys = [event["resource"]["prefect.resource.id"] for event in run.of("materialization.succeeded")]
    assert sorted(keys) == sorted(BUILT.values())


def test_no_materialization_for_tests_failures_skips_ephemerals_or_opted_out_models(run: Run) -> None:
    """Tests build nothing; a failed or skipped model built nothing; an ephemeral model is no relation; a model
    with `meta.prefect.enable_assets: false` is left out, as prefect-dbt leaves it out."""
    keys = " ".join(event["resource"]["prefect.resource.id"] for event in run.events)
    for name in NOT_MATERIALIZED:
        assert f"/{name}" not in keys, name
    assert not run.of("materialization.failed")


def test_a_materialization_names_its_upstream_assets(run: Run) -> None:
    """The related assets are the node's dbt parents' relations, sources included, and through an ephemeral
    model its own parents; a source, which no materialization describes, is also `referenced`."""
    for key, event in run.materializations().items():
        upstream = {
            related["prefect.resource.id"]
            for related in event["related"]
            if related["prefect.resource.role"] == "asset"
        }
        assert upstream == UPSTREAM[key], key
    referenced = [event["resource"]["prefect.resource.id"] for event in run.of("referenced")]
    assert referenced == [SOURCE]  # read by one node that succeeded: order_facts


def test_assets_carry_the_owner_and_description_of_the_project(run: Run) -> None:
    """Name from the relation, description from the model's YAML, owner from `meta.owner` or the dbt group's owner."""
    resources = {key: event["resource"] for key, event in run.materializations().items()}
    staging, facts = resources[f"{DB}/stg_orders"], resources[f"{DB}/order_facts"]
    assert staging["prefect.resource.name"] == "dev.main.stg_orders"
    assert staging["prefect.asset.description"] == "Orders, one row each, as the shop recorded them."
    assert json.loads(staging["prefect.asset.owners"]) == ["data-eng"]
    assert facts["prefect.asset.description"] == "Revenue and app events per customer, for finance."
    assert json.loads(facts["prefect.asset.owners"]) == ["Finance team"]
    assert "prefect.asset.owners" not in resources[f"{DB}/raw_orders"]
    (source,) = (
        event["resource"] for event in run.of("referenced") if event["resource"]["prefect.resource.id"] == SOURCE
    )
    assert source["prefect.asset.description"] == "One row per thing a customer did in the app."
    assert json.loads(source["prefect.asset.owners"]) == ["app-team"]


def test_a_materialization_is_related_to_its_node_task_run_and_flow_run(run: Run) -> None:
    """Each materialization names the node's own task run (not its step's), the flow run and dbt as the tool."""
    for unique_id, key in BUILT.items():
        related = run.materializations()[key]["related"]
        roles: dict[str, list[str]] = {}
        for resource in related:
            roles.setdefault(resource["prefect.resource.role"], []).append(resource["prefect.resource.id"])
        assert roles["task-run"] == [f"prefect.task-run.{run.nodes[unique_id].id}"], key
        assert roles["flow-run"] == [f"prefect.flow-run.{run.flow_run.id}"], key
        assert roles["asset-materialized-by"] == ["dbt"], key
        assert run.materializations()[key]["payload"]["unique_id"] == unique_id


def test_a_built_model_page_shows_its_result_status_and_compiled_sql(run: Run) -> None:
    """On a real run: one line, dbt's OK line for the model, its status and step, and its compiled SQL relative
    to the project."""
    (line,) = run.page("model.lineage.order_facts")
    result, status, message, compiled = line.message.splitlines()
    assert "OK created sql table model main.order_facts" in result
    assert (status, message) == ("success (dbt step build)", "OK")
    assert compiled == "compiled SQL: target/dev/compiled/lineage/models/order_facts.sql"


def test_a_seed_page_shows_the_rows_it_loaded(run: Run) -> None:
    (line,) = run.page("seed.lineage.raw_orders")
    assert line.message.splitlines()[1:] == ["success (dbt step build)", "INSERT 2; rows affected: 2"]


def test_a_failed_model_page_shows_its_error(run: Run) -> None:
    """The SQL error of `broken` is on its page, at ERROR, with where to read its compiled SQL."""
    (line,) = run.page("model.lineage.broken")
    assert line.level == logging.ERROR
    assert '"nope" not found' in line.message
    assert line.message.splitlines()[-1] == "compiled SQL: target/dev/compiled/lineage/models/broken.sql"


@pytest.mark.parametrize(
    ("adapter", "relation", "key"),
    [
        ("duckdb", '"dev"."main"."orders"', "duckdb://dev/main/orders"),
        ("bigquery", "`my-project`.`analytics`.`orders`", "bigquery://my-project/analytics/orders"),
        ("postgres", '"shop"."public"."Order Items"', "postgres://shop/public/OrderItems"),
    ],
)
def test_an_asset_key_is_the_relation_as_prefect_dbt_writes_it(adapter: str, relation: str, key: str) -> None:
    """Quotes dropped, dots as slashes, characters an asset key may not hold removed (prefect-dbt's
    format_resource_id): a project moved from prefect-dbt's runner keeps its assets' history."""
    assert asset_key(adapter, relation) == key
