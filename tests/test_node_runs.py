"""prefect_flows/node_runs.py on its own: dbt's node events in, the task runs a user sees in Prefect out.

The events are dbt's own, built as dbt builds them: real node objects (`ModelNode`, `SeedNode`,
`SingularTestNode`) give their `node_info`, a real `RunResult` its `to_msg_dict()`, and
`msg_from_base_event` turns `NodeStart` / `NodeFinished` / `SkippingDetails` into the message a dbt
callback receives. They are fired from the threads of a pool, as dbt's workers fire them: threads
that do not carry the step's Prefect context. The sequences are dbt's: a node runs (NodeStart,
NodeFinished), is skipped after an upstream failure (NodeStart, SkippingDetails, NodeFinished
"skipped"), or is skipped by fail-fast before it started (SkippingDetails alone).

Each node also gets dbt's lines about it (`LogStartLine`, its result line, built by dbt's own event
classes at the level dbt fires them) and, at its end, a summary: the log lines of its own page.

The task runs go to the session's real Prefect server. One real flow run runs one real task, the
step `dbt-run`, which makes its reporter as `run_dbt_step` does (from its own task run), feeds it the
events, reconciles it with dbt's results, and then plays a second attempt of the step; the tests read
back the task runs and log lines the server recorded, which is what the UI shows. Only `final_state_type` is tested
without the server.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pytest
from dbt.artifacts.resources.base import FileHash
from dbt.artifacts.schemas.run import RunResult
from dbt.contracts.graph.nodes import ModelNode, SeedNode, SingularTestNode
from dbt.events.types import (
    JinjaLogInfo,
    LogModelResult,
    LogSeedResult,
    LogStartLine,
    LogTestResult,
    NodeFinished,
    NodeStart,
    RunResultError,
    SkippingDetails,
)
from dbt_common.events.base_types import BaseEvent, EventLevel, msg_from_base_event
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterTaskRunId,
)
from prefect.client.schemas.objects import Log, StateType, TaskRun
from prefect.context import TaskRunContext
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from dbt_pipeline.dbt_invocation import NodeResult
from dbt_pipeline.node_status import NodeOutcome, NodeStatus, outcome_of
from prefect_flows.node_runs import NODE_LOGGER, RUNNING_AFTER_SECONDS, NodeRunReporter, final_state_type
from tests.prefect_api import PAGE, every_page, prefect_client

# What each dbt status must look like in Prefect, written out rather than read from the module: a
# node that ran fine is Completed, one that made the command fail is Failed, a skipped one (it did
# not run) is Cancelled. A status dbt adds one day is missing here, and the tests below say so.
EXPECTED_STATE = {
    NodeStatus.Success: StateType.COMPLETED,
    NodeStatus.Pass: StateType.COMPLETED,
    NodeStatus.Warn: StateType.COMPLETED,
    NodeStatus.NoOp: StateType.COMPLETED,
    NodeStatus.Error: StateType.FAILED,
    NodeStatus.Fail: StateType.FAILED,
    NodeStatus.RuntimeErr: StateType.FAILED,
    NodeStatus.PartialSuccess: StateType.FAILED,
    NodeStatus.Skipped: StateType.CANCELLED,
}
FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
STEP = "run"
RECORDED_WITHIN = 30  # seconds for the server to record every event (well under one normally)


# --------------------------------------------------------------------------------------------------
# Without the server: the state each dbt status ends in.


@pytest.mark.parametrize("status", list(NodeStatus), ids=str)
def test_every_dbt_status_ends_in_its_state(status: NodeStatus) -> None:
    """Each status of this dbt, as a plain string (dbt's events carry strings), maps to its state type."""
    assert status in EXPECTED_STATE, f"dbt has a node status this pipeline has not decided on: {status!r}"
    assert final_state_type(status.value) is EXPECTED_STATE[status]


def test_a_status_dbt_does_not_know_fails() -> None:
    """A status outside dbt's NodeStatus (a newer dbt, a typo) fails the node rather than passing it."""
    assert final_state_type("exploded") is StateType.FAILED
    assert final_state_type("") is StateType.FAILED


# --------------------------------------------------------------------------------------------------
# A step of dbt nodes, as dbt reports them.


def _node(kind: str, name: str) -> ModelNode | SeedNode | SingularTestNode:
    """A dbt node of project `shop`, as dbt's parser makes it (what `node_info` is built from)."""
    node_class, folder, extension = {
        "model": (ModelNode, "models", "sql"),
        "seed": (SeedNode, "seeds", "csv"),
        "test": (SingularTestNode, "tests", "sql"),
    }[kind]
    return node_class(  # type: ignore[no-any-return]
        database="warehouse",
        schema="analytics",
        name=name,
        resource_type=kind,
        package_name="shop",
        path=f"{name}.{extension}",
        original_file_path=f"{folder}/{name}.{extension}",
        unique_id=f"{kind}.shop.{name}",
        fqn=["shop", name],
        alias=name,
        checksum=FileHash.from_contents(name),
    )


@dataclass(frozen=True)
class Case:
    """One node of the step: the events dbt fires for it and its entry in dbt's results.

    Attributes:
        events: The dbt events the reporter receives for the node, in order.
        status: Its status in dbt's results (run_results.json); None when dbt reported no result.
        event_status: The status its NodeFinished event carries, when it differs from the result's.
    """

    kind: str
    name: str
    events: tuple[str, ...]
    status: str | None
    message: str = "OK"
    adapter_response: dict[str, Any] = field(default_factory=dict)
    failures: int | None = None
    event_status: str | None = None

    @property
    def unique_id(self) -> str:
        return f"{self.kind}.shop.{self.name}"

    def result(self) -> NodeResult | None:
        """The node as `invoke_dbt` reports it from dbt's results (what `reconcile` is given)."""
        if self.status is None:
            return None
        return NodeResult(
            unique_id=self.unique_id,
            name=self.name,
            resource_type=self.kind,
            status=self.status,
            message=self.message,
            execution_time=0.25,
            failures=self.failures,
            adapter_response=self.adapter_response,
            thread="Thread-1 (worker)",
        )


# A node dbt runs: it starts, prints its START line, prints its result line, finishes.
RAN = ("NodeStart", "LogStartLine", "LogResultLine", "NodeFinished")
TEST_STATUSES = {NodeStatus.Pass, NodeStatus.Fail, NodeStatus.Warn}


def _slug(status: str) -> str:
    return status.replace(" ", "_").replace("-", "_")


# One node per dbt status, run to the end through dbt's events (tests for the statuses of tests).
# A skipped node: dbt starts it, finds an upstream failure, fires SkippingDetails then NodeFinished.
STATUS_CASES = {
    status: Case(
        "test" if status in TEST_STATUSES else "model",
        f"status_{_slug(status)}",
        ("NodeStart", "SkippingDetails", "NodeFinished") if status == NodeStatus.Skipped else RAN,
        status,
        message="" if status == NodeStatus.Skipped else f"dbt says {status}",
    )
    for status in NodeStatus
}
SEED_WITH_ROWS = Case("seed", "raw_orders", RAN, "success", "INSERT 42", {"_message": "INSERT 42", "rows_affected": 42})
# dbt-postgres reports a view's creation with psycopg2's rowcount, -1: the count is unknown, not -1.
VIEW_ROWS_UNKNOWN = Case(
    "model",
    "orders_view",
    RAN,
    "success",
    "CREATE VIEW",
    {"_message": "CREATE VIEW", "code": "CREATE VIEW", "rows_affected": -1},
)
SKIPPED_BY_FAIL_FAST = Case("model", "never_started", ("SkippingDetails",), "skipped", "")
NO_RESULT = Case("model", "interrupted", ("NodeStart",), None)
FINISH_MISSED = Case("model", "finish_missed", ("NodeStart",), "success", "OK", {"rows_affected": 7})
NO_EVENT = Case("model", "no_event", (), "success", "OK")
TEST_NO_EVENT = Case("test", "unique_orders_id", (), "fail", "Got 3 results, configured to fail if != 0", failures=3)
RESULT_DISAGREES = Case("model", "results_win", RAN, "error", "Database Error: relation gone", event_status="success")
# A model whose SQL calls `log()`: dbt prints that line about the node as it runs.
LOGS_A_LINE = Case("model", "logs_a_line", ("NodeStart", "LogStartLine", "JinjaLogInfo", *RAN[2:]), "success")
# A model whose SQL is wrong: after the run dbt repeats its error in its verdict (RunResultError).
BROKEN_SQL = Case(
    "model",
    "broken_sql",
    (*RAN, "RunResultError"),
    "error",
    'Runtime Error in model broken_sql (models/broken_sql.sql)\n  Binder Error: Referenced column "nope" not found',
)
# The node the second attempt of the step reruns (with `dbt retry`), and succeeds.
RETRIED = STATUS_CASES[NodeStatus.Error]

CASES = (
    *STATUS_CASES.values(),
    SEED_WITH_ROWS,
    VIEW_ROWS_UNKNOWN,
    SKIPPED_BY_FAIL_FAST,
    NO_RESULT,
    FINISH_MISSED,
    NO_EVENT,
    TEST_NO_EVENT,
    RESULT_DISAGREES,
    BROKEN_SQL,
    LOGS_A_LINE,
)


def _dbt_event(case: Case, name: str, node: ModelNode | SeedNode | SingularTestNode, status: str | None = None) -> Any:
    """The message a dbt callback receives, built as dbt's `call_runner`, `on_skip` and `print_result_line` build it."""
    status = status or case.event_status or case.status or ""
    failed = outcome_of(status) is NodeOutcome.FAILED
    event: BaseEvent
    if name == "NodeStart":
        event = NodeStart(node_info=node.node_info)
    elif name == "LogStartLine":
        event = LogStartLine(
            description=f"{case.kind} {case.name}", index=1, total=len(CASES), node_info=node.node_info
        )
    elif name == "LogResultLine":  # dbt's line for the node's result, at ERROR when it failed
        level = EventLevel.ERROR if failed else EventLevel.INFO
        return msg_from_base_event(_result_line(case, node, status), level=level)
    elif name == "JinjaLogInfo":  # `{{ log("...", info=True) }}` in the node's SQL
        event = JinjaLogInfo(msg=f"{case.name} read 3 late orders", node_info=node.node_info)
    elif name == "RunResultError":  # dbt's end-of-run verdict on a failed node
        return msg_from_base_event(RunResultError(msg=case.message, node_info=node.node_info, group=None))
    elif name == "SkippingDetails":
        event = SkippingDetails(
            resource_type=case.kind,
            schema=node.schema,
            node_name=case.name,
            index=1,
            total=len(CASES),
            node_info=node.node_info,
            group=None,
        )
    else:
        result = RunResult(
            status=status,  # type: ignore[arg-type]
            timing=[],
            thread_id=threading.current_thread().name,
            execution_time=0.25,
            adapter_response=case.adapter_response,
            message=case.message,
            failures=case.failures,
            node=node,
            batch_results=None,
        )
        event = NodeFinished(node_info=node.node_info, run_result=result.to_msg_dict())  # type: ignore[no-untyped-call]
    return msg_from_base_event(event)


def _result_line(case: Case, node: ModelNode | SeedNode | SingularTestNode, status: str) -> BaseEvent:
    """dbt's result line for a node ("1 of 9 OK created sql table model ..."), per type as dbt prints it."""
    common: dict[str, Any] = {"status": status, "index": 1, "execution_time": 0.25, "node_info": node.node_info}
    if case.kind == "test":
        return LogTestResult(name=case.name, num_models=1, num_failures=case.failures or 0, **common)
    if case.kind == "seed":
        return LogSeedResult(
            result_message=case.message, total=len(CASES), schema=node.schema, relation=case.name, **common
        )
    return LogModelResult(description=f"sql table model {node.schema}.{case.name}", total=len(CASES), **common)


def _run_nodes(reporter: NodeRunReporter, cases: tuple[Case, ...], status: str | None = None) -> None:
    """Fire each node's events in order, from the threads of a pool (which lack the step's context)."""

    def one_node(case: Case) -> None:
        node = _node(case.kind, case.name)
        for name in case.events:
            reporter(_dbt_event(case, name, node, status))

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="Thread") as pool:
        list(pool.map(one_node, cases))


@dataclass(frozen=True)
class StepRun:
    flow_run_id: UUID
    step_task_run_id: UUID
    attempts: tuple[dict[str, TaskRun], ...]  # per attempt: the reporter's own task runs by unique id


@task(name="dbt-run", cache_policy=NO_CACHE)
def dbt_step() -> StepRun:
    """The step, as `run_dbt_step` makes its reporter; then a second attempt, rerunning the failed node."""
    task_run = TaskRunContext.get().task_run  # type: ignore[union-attr]
    assert task_run.flow_run_id is not None
    first = NodeRunReporter(task_run.flow_run_id, task_run.id, STEP, 1)
    _run_nodes(first, CASES)
    first.reconcile([result for case in CASES if (result := case.result()) is not None])

    second = NodeRunReporter(task_run.flow_run_id, task_run.id, STEP, 2)
    _run_nodes(second, (RETRIED,), NodeStatus.Success)
    retried = RETRIED.result()
    assert retried is not None
    second.reconcile([dataclasses.replace(retried, status=NodeStatus.Success)])
    return StepRun(task_run.flow_run_id, task_run.id, (first.task_runs, second.task_runs))


@flow(name="unit-test-node-runs")
def one_step_flow() -> StepRun:
    return dbt_step()


@dataclass(frozen=True)
class Recorded:
    """What the server recorded for the step's nodes: what a user sees in the UI."""

    step_run: StepRun
    runs: dict[UUID, TaskRun]  # every task run of the flow run (the step's and the nodes'), by id
    behind: tuple[UUID, ...]  # node runs whose last state the server had not recorded in time
    logs: tuple[Log, ...]  # every log line of the flow run, in time order

    def attempt(self, number: int) -> dict[str, TaskRun]:
        """The recorded node runs of the step's attempt `number`, by unique id."""
        mirrored = self.step_run.attempts[number - 1]
        return {unique_id: self.runs[run.id] for unique_id, run in mirrored.items() if run.id in self.runs}

    def node(self, case: Case) -> TaskRun:
        run = self.attempt(1).get(case.unique_id)
        assert run is not None, f"the server recorded no task run for {case.unique_id}"
        return run

    def page(self, run: TaskRun) -> list[Log]:
        """The log lines a task run's page shows: those carrying its id."""
        return [log for log in self.logs if log.task_run_id == run.id]


def _read_recorded(prefect_api: str, step_run: StepRun) -> Recorded:
    """The flow run's task runs once the server has recorded the last event of every node run (or time is up)."""
    expected = {run.id: run.state_id for attempt in step_run.attempts for run in attempt.values()}
    only_this_run = FlowRunFilter(id=FlowRunFilterId(any_=[step_run.flow_run_id]))
    deadline = time.monotonic() + RECORDED_WITHIN
    with prefect_client(prefect_api) as client:
        while True:
            runs = {
                run.id: run
                for run in every_page(
                    lambda offset: client.read_task_runs(flow_run_filter=only_this_run, limit=PAGE, offset=offset)
                )
            }
            behind = tuple(
                run_id
                for run_id, state_id in expected.items()
                if getattr(runs.get(run_id), "state_id", None) != state_id
            )
            if not behind or time.monotonic() > deadline:
                return Recorded(step_run, runs, behind, _logs_of(client, step_run.flow_run_id))
            time.sleep(0.2)


def _logs_of(client: SyncPrefectClient, flow_run_id: UUID) -> tuple[Log, ...]:
    """Every log line of a flow run, in time order (the reporter flushed them before the step returned)."""
    only_its_logs = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    return tuple(every_page(lambda offset: client.read_logs(log_filter=only_its_logs, limit=PAGE, offset=offset)))


@pytest.fixture(scope="module")
def recorded(prefect_api: str) -> Iterator[Recorded]:
    """One flow run whose step mirrors CASES (then retries one node), as the session's server recorded it."""
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        # The events worker is a process-wide singleton bound to the API it first saw: start a fresh one on this API.
        EventsWorker.drain_all(timeout=30)
        step_run = one_step_flow()
        yield _read_recorded(prefect_api, step_run)
        EventsWorker.drain_all(timeout=30)


# --------------------------------------------------------------------------------------------------
# What a user sees in Prefect.


def _parents(run: TaskRun) -> list[UUID]:
    return [parent.id for parent in run.task_inputs.get("__parents__", [])]  # type: ignore[union-attr]


def test_the_server_recorded_the_last_state_of_every_node_run(recorded: Recorded) -> None:
    """Every state the reporter sent reached the server, the final one last: the UI shows the same."""
    assert not recorded.behind, f"{len(recorded.behind)} node runs not (or not finally) recorded"


def test_each_node_is_one_task_run_named_after_it_under_its_step(recorded: Recorded) -> None:
    """Every node dbt told of (by an event or in its results) is one task run, named after the node,
    filed under the flow run and nested under the step's task run, tagged with its type and step."""
    nodes = recorded.attempt(1)
    assert set(nodes) == {case.unique_id for case in CASES}
    step = recorded.runs[recorded.step_run.step_task_run_id]
    assert step.name.startswith("dbt-run")
    for case in CASES:
        run = nodes[case.unique_id]
        assert run.name == case.name
        assert run.flow_run_id == recorded.step_run.flow_run_id, case.unique_id
        assert _parents(run) == [step.id], case.unique_id
        assert set(run.tags) == {f"dbt:{case.kind}", f"dbt-step:{STEP}"}, case.unique_id
    assert len({run.id for run in nodes.values()}) == len(CASES)


@pytest.mark.parametrize("status", list(NodeStatus), ids=str)
def test_a_node_ends_in_the_state_of_its_dbt_status(recorded: Recorded, status: NodeStatus) -> None:
    """A node dbt ran to the end (or skipped after starting it) ends in its status's state, named as Prefect names
    the type (the UI's States filter finds it by that name); dbt's status opens the state's message."""
    run = recorded.node(STATUS_CASES[status])
    assert run.state_type is EXPECTED_STATE.get(status), run.state
    assert run.state_type is not None
    assert run.state_name == run.state_type.value.title()
    assert run.state is not None
    assert (run.state.message or "").startswith(str(status)), run.state.message
    assert run.start_time is not None  # dbt started it: the user sees when
    assert run.end_time is not None
    assert run.end_time >= run.start_time


def test_a_node_skipped_before_it_started_is_cancelled_and_never_ran(recorded: Recorded) -> None:
    """dbt's fail-fast skips the nodes it had not started (SkippingDetails alone): Cancelled, no start."""
    run = recorded.node(SKIPPED_BY_FAIL_FAST)
    assert (run.state_type, run.state_name) == (StateType.CANCELLED, "Cancelled")
    assert run.start_time is None
    assert run.run_count == 0


def test_a_node_started_without_result_fails_saying_so(recorded: Recorded) -> None:
    """A node dbt started and never reported on (an interrupted thread) is not left Running: it fails."""
    run = recorded.node(NO_RESULT)
    assert run.state_type is StateType.FAILED
    assert run.state is not None
    assert "dbt reported no result" in (run.state.message or "")
    assert NO_RESULT.unique_id in (run.state.message or "")


def test_reconcile_ends_a_node_whose_finish_event_was_missed(recorded: Recorded) -> None:
    """Started, its NodeFinished never seen, in dbt's results as success: Completed, with its rows."""
    run = recorded.node(FINISH_MISSED)
    assert (run.state_type, run.state_name) == (StateType.COMPLETED, "Completed")
    assert run.state is not None
    assert run.state.message == "success: OK; rows affected: 7"


def test_reconcile_adds_the_nodes_dbt_sent_no_event_for(recorded: Recorded) -> None:
    """A node only dbt's results name still gets its task run, with the test's count of failing rows."""
    ran = recorded.node(NO_EVENT)
    assert (ran.state_type, ran.state_name) == (StateType.COMPLETED, "Completed")
    failing = recorded.node(TEST_NO_EVENT)
    assert (failing.state_type, failing.state_name) == (StateType.FAILED, "Failed")
    assert failing.state is not None
    assert failing.state.message == "fail: Got 3 results, configured to fail if != 0; failing rows: 3"


def test_dbt_results_win_over_the_event(recorded: Recorded) -> None:
    """When dbt's results (run_results.json) say otherwise than the node's NodeFinished, the results win."""
    run = recorded.node(RESULT_DISAGREES)
    assert (run.state_type, run.state_name) == (StateType.FAILED, "Failed")
    assert run.state is not None
    assert "relation gone" in (run.state.message or "")


def test_the_message_says_how_many_rows_a_node_wrote(recorded: Recorded) -> None:
    """dbt's status and message, then the rows affected when the adapter counted them."""
    seed = recorded.node(SEED_WITH_ROWS)
    assert seed.state is not None
    assert seed.state.message == "success: INSERT 42; rows affected: 42"
    error = recorded.node(STATUS_CASES[NodeStatus.Error])
    assert error.state is not None
    assert error.state.message == "error: dbt says error"  # no count when the adapter gave none


def test_an_unknown_row_count_is_not_shown_as_rows_affected(recorded: Recorded) -> None:
    """dbt-postgres says -1 rows for a view (psycopg2's "unknown"): the message must not claim -1 rows."""
    view = recorded.node(VIEW_ROWS_UNKNOWN)
    assert view.state is not None
    assert view.state.message == "success: CREATE VIEW"


def test_a_retried_step_gets_a_task_run_per_attempt(recorded: Recorded) -> None:
    """The second attempt's node is a task run of its own: the first attempt's failure stays visible."""
    first, second = recorded.attempt(1)[RETRIED.unique_id], recorded.attempt(2)[RETRIED.unique_id]
    assert first.id != second.id
    assert first.dynamic_key != second.dynamic_key
    assert (first.state_type, second.state_type) == (StateType.FAILED, StateType.COMPLETED)
    assert _parents(second) == [recorded.step_run.step_task_run_id]
    assert set(recorded.attempt(2)) == {RETRIED.unique_id}


def test_nothing_is_left_running_after_reconcile(recorded: Recorded) -> None:
    """Once the step reconciled, every node run of either attempt is in a final state on the server."""
    nodes = [*recorded.attempt(1).values(), *recorded.attempt(2).values()]
    assert len(nodes) == len(CASES) + 1
    not_final = {run.name: run.state_type for run in nodes if run.state_type not in FINAL}
    assert not not_final


# What the node's page shows: its own lines (test_node_assets.py checks them on a real dbt run too).
SUMMARY_LEVEL = {
    **dict.fromkeys([NodeStatus.Success, NodeStatus.Pass, NodeStatus.NoOp, NodeStatus.Skipped], logging.INFO),
    NodeStatus.Warn: logging.WARNING,
    **dict.fromkeys([NodeStatus.Error, NodeStatus.Fail, NodeStatus.RuntimeErr, NodeStatus.PartialSuccess],
                    logging.ERROR),
}  # fmt: skip


def test_a_node_page_ends_with_dbt_result_line_and_its_summary(recorded: Recorded) -> None:
    """A seed's page: one line, dbt's OK line for it then its status, step, message and rows, on its own task run
    (and flow run), under dbt's logger name. It ran fast: dbt's START line would tell nothing its times do not."""
    (line,) = recorded.page(recorded.node(SEED_WITH_ROWS))
    result, *summary = line.message.splitlines()
    assert "OK loaded seed file analytics.raw_orders" in result
    assert "INSERT 42" in result
    assert summary == ["success (dbt step run)", "INSERT 42; rows affected: 42"]
    assert (line.level, line.name, line.flow_run_id) == (logging.INFO, NODE_LOGGER, recorded.step_run.flow_run_id)


def test_a_failed_node_page_shows_its_error_once(recorded: Recorded) -> None:
    """A model that failed: its ERROR line and its error text, at ERROR; dbt's end-of-run verdict repeats that
    error for the step, and stays off the node's page."""
    page = recorded.page(recorded.node(BROKEN_SQL))
    assert [log.level for log in page] == [logging.ERROR]
    result, status, *error = page[0].message.splitlines()
    assert "ERROR creating sql table model analytics.broken_sql" in result
    assert status == "error (dbt step run)"
    assert "\n".join(error) == BROKEN_SQL.message


def test_what_else_dbt_says_about_a_node_is_on_its_page_first(recorded: Recorded) -> None:
    """A line dbt prints about a node while it runs (a `log()` call in its SQL) is on the node's page, before
    its last line."""
    first, last = (log.message for log in recorded.page(recorded.node(LOGS_A_LINE)))
    assert first == "logs_a_line read 3 late orders"
    assert "success (dbt step run)" in last.splitlines()


@pytest.mark.parametrize("status", list(NodeStatus), ids=str)
def test_a_node_last_line_says_its_status_at_its_level(recorded: Recorded, status: NodeStatus) -> None:
    """The last line of each node's page names its dbt status and step, at INFO, WARNING for a test that warns,
    ERROR for a failure: a user filtering the page on errors sees the failed nodes' errors."""
    last = recorded.page(recorded.node(STATUS_CASES[status]))[-1]
    assert f"{status} (dbt step run)" in last.message.splitlines()
    assert last.level == SUMMARY_LEVEL[status]


def test_a_node_skipped_before_it_started_shows_why_on_its_page(recorded: Recorded) -> None:
    """Skipped by fail-fast (SkippingDetails alone): dbt's SKIP line and the status, nothing else."""
    (line,) = recorded.page(recorded.node(SKIPPED_BY_FAIL_FAST))
    skip, status = line.message.splitlines()
    assert "SKIP relation analytics.never_started" in skip
    assert status == "skipped (dbt step run)"


def test_a_node_skipped_after_it_started_ends_once(recorded: Recorded, prefect_api: str) -> None:
    """dbt says a skipped node's end twice (SkippingDetails, then NodeFinished "skipped"): one final state, one
    last line."""
    run = recorded.node(STATUS_CASES[NodeStatus.Skipped])
    assert _state_history(prefect_api, run.id) == ["Cancelled"]
    (line,) = recorded.page(run)
    assert "SKIP relation analytics.status_skipped" in line.message


def test_a_node_dbt_only_named_in_its_results_still_gets_its_summary(recorded: Recorded) -> None:
    """No event, only a result (reconcile): the page still says how the test ended and how many rows failed."""
    (summary,) = recorded.page(recorded.node(TEST_NO_EVENT))
    assert summary.message == f"fail (dbt step run)\n{TEST_NO_EVENT.message}; failing rows: 3"
    assert summary.level == logging.ERROR


def test_every_line_of_the_reporter_is_on_a_node_page(recorded: Recorded) -> None:
    """The reporter sends no line to the step's page (its logger has dbt's lines already) nor one without a node."""
    nodes = {run.id for attempt in recorded.step_run.attempts for run in attempt.values()}
    ours = [log for log in recorded.logs if log.name == NODE_LOGGER]
    assert {log.task_run_id for log in ours} == nodes
    retried = recorded.attempt(2)[RETRIED.unique_id]
    assert "success (dbt step run, attempt 2)" in recorded.page(retried)[-1].message.splitlines()


def _state_history(prefect_api: str, run_id: UUID) -> list[str | None]:
    with prefect_client(prefect_api) as client:
        states = client.read_task_run_states(run_id)
    return [state.name for state in sorted(states, key=lambda state: state.timestamp)]


def test_a_fast_node_is_one_event_carrying_its_start_and_run_time(recorded: Recorded, prefect_api: str) -> None:
    """A node that finished within RUNNING_AFTER_SECONDS: one state on the server (its final one), yet its
    start, end and run time are dbt's, and it is listed among task runs (expected start time set)."""
    run = recorded.node(STATUS_CASES[NodeStatus.Success])
    assert _state_history(prefect_api, run.id) == ["Completed"]
    assert run.start_time is not None
    assert run.end_time is not None
    assert run.run_count == 1
    assert run.expected_start_time == run.start_time
    assert run.total_run_time == run.end_time - run.start_time


@task(name="dbt-run", cache_policy=NO_CACHE)
def slow_node_step(prefect_api: str) -> tuple[list[str | None], UUID]:
    """One node that runs 1.5 RUNNING_AFTER_SECONDS: its states on the server while it runs, and its task run."""
    task_run = TaskRunContext.get().task_run  # type: ignore[union-attr]
    assert task_run.flow_run_id is not None
    reporter = NodeRunReporter(task_run.flow_run_id, task_run.id, STEP, 1)
    case = Case("model", "slow_model", RAN, "success")
    node = _node(case.kind, case.name)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="Thread") as pool:  # dbt's thread, without context
        pool.submit(reporter, _dbt_event(case, "NodeStart", node)).result()
        pool.submit(reporter, _dbt_event(case, "LogStartLine", node)).result()
    time.sleep(RUNNING_AFTER_SECONDS * 1.5)
    EventsWorker.instance().wait_until_empty()
    (run,) = reporter.task_runs.values()
    deadline = time.monotonic() + RECORDED_WITHIN
    while not (while_running := _state_history(prefect_api, run.id)) and time.monotonic() < deadline:
        time.sleep(0.2)  # the server records events asynchronously
    reporter(_dbt_event(case, "NodeFinished", node))
    result = case.result()
    assert result is not None
    reporter.reconcile([result])
    return while_running, run.id


@flow(name="unit-test-slow-node")
def slow_node_flow(prefect_api: str) -> tuple[list[str | None], UUID]:
    return slow_node_step(prefect_api)


def test_a_slow_node_is_shown_running_while_it_runs(prefect_api: str) -> None:
    """A node still running after RUNNING_AFTER_SECONDS is Running on the server before it finishes, then ends."""
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        EventsWorker.drain_all(timeout=30)
        while_running, run_id = slow_node_flow(prefect_api)
        EventsWorker.drain_all(timeout=30)
    assert while_running == ["Running"]
    deadline = time.monotonic() + RECORDED_WITHIN
    while (after := _state_history(prefect_api, run_id)) != ["Running", "Completed"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert after == ["Running", "Completed"]
    # Its page: dbt's START line, sent when the node was shown Running, then its last line.
    with prefect_client(prefect_api) as client:
        page = client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[run_id])))
    assert len(page) == 2
    assert "START model slow_model" in page[0].message
    assert "success (dbt step run)" in page[1].message.splitlines()
