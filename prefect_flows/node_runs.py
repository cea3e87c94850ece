"""Every dbt node of a step as its own Prefect task run, at the cost of a few queued events.

prefect-dbt's runner turns each node into a real task, which costs about 100 ms per node. A
Prefect 3 client reports a task run by emitting state-change events, which the server records;
the task engine itself does exactly that. So we do it directly from dbt's in-process events: a
`NodeStart` becomes a task run (named after the node, nested under its dbt step) entering Running,
`NodeFinished` or `SkippingDetails` its final state. Nothing is parsed twice, no process is spawned
and dbt's threads never wait on the network: events are queued and sent in the background.

A node that finishes within `RUNNING_AFTER_SECONDS` is reported with one event, its final state
carrying its start and end times, instead of two: most nodes of a large project (views, tests) take
milliseconds, a Running state nobody could see costs the server as much as the final one, and on a
machine shared with the server that was a tenth of the run's time. A slower node is shown Running as
soon as it has run that long, by a ticker thread, so a long model is still seen running.

At the end of the step, `reconcile` makes the final states match dbt's results (what
run_results.json holds), including nodes dbt reported no event for, and waits until every event
has been handed to the API, so that no node is left Running when the process exits.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from dbt_common.events.base_types import EventMsg
from prefect.client.schemas.objects import State, StateType, TaskRun, TaskRunPolicy, TaskRunResult
from prefect.events import Event
from prefect.events.worker import EventsWorker
from prefect.utilities.engine import emit_task_run_state_change_event

from dbt_pipeline.dbt_invocation import NodeResult
from dbt_pipeline.node_status import NodeOutcome, NodeStatus, outcome_of

# A node still running after this long is shown Running; a faster one only in its final state.
RUNNING_AFTER_SECONDS = 1.0

# A node's outcome -> the Prefect state its task run ends in. A skipped node did not run, so it is
# not Completed; Prefect has no "skipped" type and Cancelled is the one that reads as "not run".
_FINAL_STATE_TYPES = {
    NodeOutcome.PASSED: StateType.COMPLETED,
    NodeOutcome.FAILED: StateType.FAILED,
    NodeOutcome.SKIPPED: StateType.CANCELLED,
}


def final_state_type(status: str) -> StateType:
    """The Prefect state type of a node that ended with dbt status `status`."""
    return _FINAL_STATE_TYPES[outcome_of(status)]


@dataclass
class _NodeRun:
    """One mirrored task run and the last event emitted for it (events form a chain)."""

    task_run: TaskRun
    last_event: Event | None = None
    final_status: str | None = None
    started_at: datetime | None = None  # when dbt started the node, while its Running state is not reported

    def start(self, at: datetime) -> None:
        """dbt started the node: remember when; its Running state is reported only if it runs long enough."""
        self.started_at = at
        self.task_run.expected_start_time = at  # type: ignore[assignment]  # the task-run list filters on it

    def report_running(self) -> None:
        """Emit the Running state the node entered at its start."""
        started_at, self.started_at = self.started_at, None
        self.set_state(StateType.RUNNING, "Running", at=started_at)

    def set_state(
        self, state_type: StateType, name: str, message: str | None = None, *, at: datetime | None = None
    ) -> None:
        """Move the task run to a new state, entered `at` (default: now), and emit the event, as Prefect's task
        engine does. A final state of a node whose start was not reported carries its start time and run time."""
        previous = self.task_run.state
        state: State[Any] = State(type=state_type, name=name, message=message)
        if at is not None:
            state.timestamp = at
        if previous is not None and state.timestamp <= previous.timestamp:
            state.timestamp = previous.timestamp + timedelta(microseconds=1)  # keep the states ordered
        state.state_details.task_run_id = self.task_run.id
        state.state_details.flow_run_id = self.task_run.flow_run_id
        run = self.task_run
        run.state, run.state_id, run.state_type, run.state_name = state, state.id, state.type, state.name
        if state.is_running():
            run.run_count += 1
            run.start_time = state.timestamp  # type: ignore[assignment]  # the engine does the same
        elif previous is not None and previous.is_running():
            run.total_run_time += state.timestamp - previous.timestamp
        elif self.started_at is not None and state.is_final():  # one event for the whole run
            run.run_count += 1
            run.start_time = self.started_at  # type: ignore[assignment]
            run.total_run_time += max(state.timestamp - self.started_at, timedelta(0))
            self.started_at = None
        if state.is_final() and run.start_time is not None:
            run.end_time = state.timestamp  # type: ignore[assignment]
        self.last_event = emit_task_run_state_change_event(
            task_run=run, initial_state=previous, validated_state=state, follows=self.last_event
        )


@dataclass
class NodeRunReporter:
    """A dbt event callback mirroring the nodes of one dbt step as child task runs of that step.

    Attributes:
        flow_run_id: The flow run the task runs belong to.
        step_task_run_id: The step's task run, parent of every node's task run.
        step: The step name, used as a tag so a step's nodes can be filtered in the UI.
        attempt: The step's attempt: a retried node gets a task run per attempt.
    """

    flow_run_id: UUID
    step_task_run_id: UUID
    step: str
    attempt: int = 1
    _runs: dict[str, _NodeRun] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # The step's Prefect run context: dbt calls back from its own threads, which lack it, and the
    # events must name their flow run (the server files a task run under the flow run they name).
    _context: contextvars.Context = field(default_factory=contextvars.copy_context)

    _ticker: threading.Thread | None = None
    _done: threading.Event = field(default_factory=threading.Event)
    _not_yet_running: dict[str, _NodeRun] = field(default_factory=dict)  # started, Running not reported

    def __call__(self, event: EventMsg) -> None:
        """Handle one dbt event (called from dbt's threads) inside the step's run context."""
        if event.info.name in ("NodeStart", "NodeFinished", "SkippingDetails"):
            self._context.copy().run(self._handle, event)

    def _handle(self, event: EventMsg) -> None:
        name = event.info.name
        at = event.info.ts.ToDatetime(tzinfo=UTC)  # type: ignore[attr-defined]  # protobuf: dbt's own time
        if name == "NodeStart":
            self._start(event.data.node_info, at)
        elif name == "NodeFinished":
            result = event.data.run_result
            rows = result.adapter_response.fields.get("rows_affected")
            counted = rows is not None and rows.number_value >= 0  # -1: the adapter could not count (a view)
            message = result.message + (f"; rows affected: {int(rows.number_value)}" if counted else "")
            self._finish(event.data.node_info, result.status, message, at)
        elif name == "SkippingDetails":
            self._finish(event.data.node_info, NodeStatus.Skipped, None, at)

    @property
    def task_runs(self) -> dict[str, TaskRun]:
        """The mirrored task runs, by node unique id."""
        return {unique_id: run.task_run for unique_id, run in self._runs.items()}

    def reconcile(self, results: Sequence[NodeResult]) -> None:
        """End every node's task run in the state dbt reported, then flush the events to the API."""
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
        for result in results:
            run = self._run_for(result.unique_id, result.name, result.resource_type)
            if run.final_status != result.status:
                if run.started_at is not None:
                    run.report_running()
                elif run.task_run.state is None or not run.task_run.state.is_running():
                    run.set_state(StateType.RUNNING, "Running")
                self._end(run, result.status, _state_message(result))
        for unique_id, run in self._runs.items():
            if run.final_status is None:  # started, but dbt reported no result: it did not finish
                if run.started_at is not None:
                    run.report_running()
                self._end(run, NodeStatus.Error, f"{unique_id}: dbt reported no result for this node")
        EventsWorker.instance().wait_until_empty()

    def _start(self, node_info: Any, at: datetime) -> None:
        with self._lock:
            run = self._run_for(node_info.unique_id, node_info.node_name, node_info.resource_type)
            run.start(at)
            self._not_yet_running[node_info.unique_id] = run
            if self._ticker is None:
                self._ticker = threading.Thread(
                    target=self._context.copy().run, args=(self._tick,), name=f"dbt-{self.step}-running", daemon=True
                )
                self._ticker.start()

    def _finish(self, node_info: Any, status: str, message: str | None, at: datetime) -> None:
        with self._lock:
            run = self._run_for(node_info.unique_id, node_info.node_name, node_info.resource_type)
            self._not_yet_running.pop(node_info.unique_id, None)
            self._end(run, status, message, at=at)

    def _tick(self) -> None:
        """Until the step ends: show Running the nodes that have been running for RUNNING_AFTER_SECONDS."""
        while not self._done.wait(RUNNING_AFTER_SECONDS / 4):
            now = datetime.now(UTC)
            with self._lock:
                for unique_id, run in list(self._not_yet_running.items()):
                    if run.started_at is None:
                        del self._not_yet_running[unique_id]
                    elif (now - run.started_at).total_seconds() >= RUNNING_AFTER_SECONDS:
                        del self._not_yet_running[unique_id]
                        run.report_running()

    def _end(self, run: _NodeRun, status: str, message: str | None, *, at: datetime | None = None) -> None:
        run.final_status = status
        run.set_state(final_state_type(status), status.title(), message, at=at)

    def _run_for(self, unique_id: str, name: str, resource_type: str) -> _NodeRun:
        """The task run of a node, created on first sight.

        Its first event is Running (or the final state of a node dbt skipped), not Pending as in
        Prefect's engine: the server records a task run from any first state, and one event less
        per node is a third less event traffic on a 1,000-node run.
        """
        run = self._runs.get(unique_id)
        if run is None:
            task_run = TaskRun(
                id=uuid4(),
                name=name,
                flow_run_id=self.flow_run_id,
                task_key=f"dbt-{resource_type}-{unique_id}",
                # The server keys task runs on (flow run, task key, dynamic key): one per node and attempt.
                dynamic_key=f"{self.step_task_run_id}-{self.attempt}",
                empirical_policy=TaskRunPolicy(),
                tags=[f"dbt:{resource_type}", f"dbt-step:{self.step}"],
                task_inputs={"__parents__": [TaskRunResult(id=self.step_task_run_id)]},
            )
            run = self._runs[unique_id] = _NodeRun(task_run)
        return run


def _state_message(result: NodeResult) -> str:
    """What a user wants next to the state: dbt's message, rows affected, failing rows of a test."""
    parts = [result.message or result.status]
    if result.rows_affected is not None:
        parts.append(f"rows affected: {result.rows_affected}")
    if result.failures:
        parts.append(f"failing rows: {result.failures}")
    return "; ".join(parts)
