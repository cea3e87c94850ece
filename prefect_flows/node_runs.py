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

A node's page in the UI shows its own log lines, sent as Prefect logs carrying the node's task run
id: when it ends, one line with dbt's result line for it and its summary (its status and step, dbt's
message with the rows affected or the error, its compiled SQL); dbt's START line only for a node
still running after RUNNING_AFTER_SECONDS (a fast node's page would gain nothing from it, and on a
large project every line is a row the server writes); and whatever else dbt says about the node (a
warning, a `log()` call in its SQL). They go through Prefect's own log worker (`APILogWorker`, what
`APILogHandler` uses), which batches them in the background; the step's logger is left alone. A
model, seed or snapshot that succeeds is also reported as an asset materialization (node_assets.py).

At the end of the step, `reconcile` makes the final states match dbt's results (what
run_results.json holds), including nodes dbt reported no event for, and waits until every event
and log line has been handed to the API, so that no node is left Running when the process exits.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from dbt_common.events.base_types import EventMsg
from dbt_common.exceptions.base import env_secrets, scrub_secrets
from prefect.client.schemas.actions import LogCreate
from prefect.client.schemas.objects import State, StateType, TaskRun, TaskRunPolicy, TaskRunResult
from prefect.context import TaskRunContext
from prefect.events import Event
from prefect.events.worker import EventsWorker, should_emit_events
from prefect.logging.handlers import APILogWorker, emit_api_log
from prefect.settings import get_current_settings
from prefect.utilities.engine import emit_task_run_state_change_event

from dbt_pipeline.dbt_arguments import DbtInvocation
from dbt_pipeline.dbt_events import LOG_LEVELS, RESULT_EVENTS
from dbt_pipeline.dbt_invocation import NodeResult
from dbt_pipeline.node_status import NodeOutcome, NodeStatus, outcome_of
from prefect_flows.node_assets import materialization_events

# A node still running after this long is shown Running; a faster one only in its final state.
RUNNING_AFTER_SECONDS = 1.0

# A node's outcome -> the Prefect state its task run ends in. A skipped node did not run, so it is
# not Completed; Prefect has no "skipped" type and Cancelled is the one that reads as "not run".
_FINAL_STATE_TYPES = {
    NodeOutcome.PASSED: StateType.COMPLETED,
    NodeOutcome.FAILED: StateType.FAILED,
    NodeOutcome.SKIPPED: StateType.CANCELLED,
}


# The dbt events that move a node's task run from one state to the next.
_STATE_EVENTS = frozenset({"NodeStart", "NodeFinished", "SkippingDetails"})
# dbt's line for a node's start; its result lines (dbt_pipeline.dbt_events) are kept for the node's last line
# (see the module's doc). dbt's debug lines (SQL, connections) stay in dbt's log file.
_START_LINE = "LogStartLine"
# dbt's end-of-run verdict on a failed node (its error, where its compiled SQL is): the node's own
# last line says the same as soon as the node ends, so these stay on the step's page only.
_VERDICT_EVENTS = frozenset(
    {"RunResultError", "RunResultErrorNoMessage", "RunResultFailure", "RunResultWarning", "RunResultWarningMessage",
     "SQLCompiledPath"}
)  # fmt: skip
# The level of a node's summary line (a test that warns: WARNING).
_SUMMARY_LEVELS = {
    NodeOutcome.PASSED: logging.INFO,
    NodeOutcome.FAILED: logging.ERROR,
    NodeOutcome.SKIPPED: logging.INFO,
}
NODE_LOGGER = "dbt"  # the logger name the node's lines show in the UI
LOG_FLUSH_SECONDS = 30.0  # at most this long at the end of a step to hand the node's lines to the API


# A node's final state is named as Prefect names the type, so that the UI's States filter (which filters
# on names: Completed, Failed, Cancelled) finds the nodes; dbt's own status opens the state's message.
_STATE_NAMES = {StateType.COMPLETED: "Completed", StateType.FAILED: "Failed", StateType.CANCELLED: "Cancelled"}


def final_state_type(status: str) -> StateType:
    """The Prefect state type of a node that ended with dbt status `status`."""
    return _FINAL_STATE_TYPES[outcome_of(status)]


@dataclass
class _NodeRun:
    """One mirrored task run and the last event emitted for it (events form a chain)."""

    task_run: TaskRun
    unique_id: str
    last_event: Event | None = None
    final_status: str | None = None
    started_at: datetime | None = None  # when dbt started the node, while its Running state is not reported
    rows_affected: int | None = None  # rows the node wrote, when the adapter counted them
    last_line_at: datetime | None = None  # the time of dbt's last line sent to the node's page
    start_line: tuple[str, datetime] | None = None  # dbt's START line, sent only if the node runs long
    result_line: str | None = None  # dbt's result line, sent with the node's summary

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
        invocation: The run's dbt invocation: its manifest (from the parse step) gives each node's
            compiled SQL and lineage, its project the folder paths are shown relative to. Without
            it (or without a manifest) nodes are still mirrored, with neither.
    """

    flow_run_id: UUID
    step_task_run_id: UUID
    step: str
    attempt: int = 1
    invocation: DbtInvocation | None = None
    _runs: dict[str, _NodeRun] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # The step's Prefect run context: dbt calls back from its own threads, which lack it, and the
    # events must name their flow run (the server files a task run under the flow run they name).
    _context: contextvars.Context = field(default_factory=contextvars.copy_context)
    # Whether Prefect sends logs to the API here (PREFECT_LOGGING_TO_API_ENABLED), read in the step's context.
    _logs_to_api: bool = field(default_factory=lambda: get_current_settings().logging.to_api.enabled)
    _logged: bool = False  # a line was handed to the log worker: flush it at the end of the step
    # The longest line the API takes (PREFECT_LOGGING_TO_API_MAX_LOG_SIZE bytes; 4 bytes a character at most).
    _max_line: int = field(default_factory=lambda: get_current_settings().logging.to_api.max_log_size // 4 - 1024)

    _ticker: threading.Thread | None = None
    _done: threading.Event = field(default_factory=threading.Event)
    _not_yet_running: dict[str, _NodeRun] = field(default_factory=dict)  # started, Running not reported

    def __call__(self, event: EventMsg) -> None:
        """Handle one dbt event (called from dbt's threads) inside the step's run context."""
        info = event.info
        if info.name in _STATE_EVENTS or (self._logs_to_api and info.level in LOG_LEVELS):
            self._context.copy().run(self._handle, event)

    def _handle(self, event: EventMsg) -> None:
        name = event.info.name
        at = event.info.ts.ToDatetime(tzinfo=UTC)  # type: ignore[attr-defined]  # protobuf: dbt's own time
        if self._logs_to_api and event.info.level in LOG_LEVELS and name not in _VERDICT_EVENTS:
            self._log_node_line(event, at)  # before the state: a node's summary is the last line of its page
        if name == "NodeStart":
            self._start(event.data.node_info, at)
        elif name == "NodeFinished":
            result = event.data.run_result
            rows = result.adapter_response.fields.get("rows_affected")
            counted = rows is not None and rows.number_value >= 0  # -1: the adapter could not count (a view)
            message = result.message + (f"; rows affected: {int(rows.number_value)}" if counted else "")
            self._finish(event.data.node_info, result.status, message, at, int(rows.number_value) if counted else None)
        elif name == "SkippingDetails":
            self._finish(event.data.node_info, NodeStatus.Skipped, None, at)

    @property
    def task_runs(self) -> dict[str, TaskRun]:
        """The mirrored task runs, by node unique id."""
        return {unique_id: run.task_run for unique_id, run in self._runs.items()}

    def reconcile(self, results: Sequence[NodeResult]) -> None:
        """End every node's task run in the state dbt reported, then flush the events and log lines to the API."""
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
                run.rows_affected = result.rows_affected
                self._end(run, result.status, _state_message(result))
        for unique_id, run in self._runs.items():
            if run.final_status is None:  # started, but dbt reported no result: it did not finish
                if run.started_at is not None:
                    run.report_running()
                self._log_start_line(run)  # all its page has to say it started
                self._end(run, NodeStatus.Error, f"{unique_id}: dbt reported no result for this node")
        EventsWorker.instance().wait_until_empty()
        if self._logged:
            APILogWorker.drain_all(timeout=LOG_FLUSH_SECONDS)  # sends what is queued now; the next line starts anew

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

    def _finish(self, node_info: Any, status: str, message: str | None, at: datetime, rows: int | None = None) -> None:
        with self._lock:
            run = self._run_for(node_info.unique_id, node_info.node_name, node_info.resource_type)
            if run.final_status == status:  # a skipped node: SkippingDetails, then NodeFinished "skipped"
                return
            self._not_yet_running.pop(node_info.unique_id, None)
            run.rows_affected = rows
            self._end(run, status, message, at=at, then=False)
        self._ended(run, status, message)

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
                        self._log_start_line(run)

    def _end(
        self, run: _NodeRun, status: str, message: str | None, *, at: datetime | None = None, then: bool = True
    ) -> None:
        """Move the node to its final state; `then`: right away, send its last line and its asset (`_ended`)."""
        run.final_status = status
        state_type = final_state_type(status)
        said = f"{status}: {message}" if message else str(status)
        run.set_state(state_type, _STATE_NAMES[state_type], said, at=at)
        if then:
            self._ended(run, status, message)

    def _ended(self, run: _NodeRun, status: str, message: str | None) -> None:
        """After a node's final state: its last line on its page and, for a relation it built, its asset.

        Called outside the reporter's lock from dbt's threads: other nodes' events need not wait on it.
        """
        assert run.task_run.state is not None
        at = run.task_run.state.timestamp
        if run.last_line_at is not None and at <= run.last_line_at:  # a line dbt printed as the node ended
            at = run.last_line_at + timedelta(microseconds=1)  # the UI orders a page's lines by time: it comes last
        level = logging.WARNING if status == NodeStatus.Warn else _SUMMARY_LEVELS[outcome_of(status)]
        self._log(run, level, self._last_line(run, status, message), at)
        manifest = self.invocation.manifest if self.invocation is not None else None
        if status != NodeStatus.Success or manifest is None:
            return
        payload = {"unique_id": run.unique_id, "status": status, "step": self.step, "rows_affected": run.rows_affected}
        payload = {key: value for key, value in payload.items() if value is not None}
        events = materialization_events(run.unique_id, manifest, occurred=at, payload=payload)
        if events and should_emit_events():
            self._emit_as_node(run, events)

    def _emit_as_node(self, run: _NodeRun, events: list[Event]) -> None:
        """Queue events inside the node's own task run context, as if the node's task emitted them: the
        events worker then relates them to the node's task run (and its tags), not to the step's."""
        step_context = TaskRunContext.get()
        node_context = step_context.model_copy(update={"task_run": run.task_run}) if step_context else None
        with node_context or contextlib.nullcontext():
            worker = EventsWorker.instance()
            for event in events:
                worker.send(event)

    def _last_line(self, run: _NodeRun, status: str, message: str | None) -> str:
        """The node's last line: dbt's result line, then its status and step, dbt's message (rows affected, the
        error), its compiled SQL. One log line per node, not one per fact: the server writes each as a row."""
        retried = f", attempt {self.attempt}" if self.attempt > 1 else ""
        lines = [run.result_line] if run.result_line else []
        run.result_line = None  # said: a later end of the node (dbt's results differing) has only its own
        lines.append(f"{status} (dbt step {self.step}{retried})")
        if message:
            lines.append(message)
        compiled = self._compiled_path(run.unique_id)
        if compiled:
            lines.append(f"compiled SQL: {compiled}")
        return "\n".join(lines)

    def _compiled_path(self, unique_id: str) -> str | None:
        """Where dbt wrote the node's compiled SQL, relative to the project (dbt gives it absolute, under
        the target path the pipeline passes), or None for a node dbt did not compile (a seed, a snapshot)."""
        if self.invocation is None or self.invocation.manifest is None:
            return None
        node = self.invocation.manifest.nodes.get(unique_id)
        path = getattr(node, "compiled_path", None)
        if not path:
            return None
        compiled, project = Path(path), self.invocation.project.path
        return str(compiled.relative_to(project)) if compiled.is_relative_to(project) else path

    def _log_node_line(self, event: EventMsg, at: datetime) -> None:
        """dbt's line about one node, for that node's page: its START and result lines are kept for later (see
        the module's doc), any other (a warning, a `log()` of its SQL) is sent now."""
        node_info = getattr(event.data, "node_info", None)  # protobuf: only the node events have one
        message: str = event.info.msg  # type: ignore[attr-defined]  # protobuf field, no stub
        if node_info is None or not message:
            return
        name = event.info.name
        if name == "SkippingDetails":  # it ends the node: its task run may not exist yet (fail-fast)
            with self._lock:
                self._run_for(node_info.unique_id, node_info.node_name, node_info.resource_type)
        run = self._runs.get(node_info.unique_id)  # a line about a node dbt never started is no node's (a hook's)
        if run is None:
            return
        if name == _START_LINE:
            run.start_line = (message, at)
        elif name in RESULT_EVENTS:
            run.result_line = message
        else:
            self._log(run, LOG_LEVELS[event.info.level], message, at)

    def _log_start_line(self, run: _NodeRun) -> None:
        """Send the START line dbt printed for a node now shown Running, at the time dbt printed it."""
        if run.start_line is not None:
            message, at = run.start_line
            run.start_line = None
            self._log(run, logging.INFO, message, at)

    def _log(self, run: _NodeRun, level: int, message: str, at: datetime) -> None:
        """Queue one line for the node's page with Prefect's log worker, which sends lines in batches.

        The line is the `LogCreate` `APILogHandler.prepare` makes (its exact JSON: one malformed line would
        make the API refuse the whole batch, other runs' lines with it), minus the handler: no record, no
        formatting, and not on the console, where the step's logger already prints dbt's lines.
        """
        if not self._logs_to_api:
            return
        text = str(scrub_secrets(message, env_secrets()))  # as dbt scrubs its own log lines
        if len(text) > self._max_line:
            text = text[: self._max_line] + "... [truncated]"
        run.last_line_at = max(at, run.last_line_at) if run.last_line_at else at
        with contextlib.suppress(RuntimeError):  # a worker stopped by a flush elsewhere: the line is lost, not dbt
            emit_api_log(
                LogCreate(
                    name=NODE_LOGGER, level=level, message=text, timestamp=at, flow_run_id=self.flow_run_id,
                    task_run_id=run.task_run.id,
                ).model_dump(mode="json")
            )  # fmt: skip
        self._logged = True

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
            run = self._runs[unique_id] = _NodeRun(task_run, unique_id)
        return run


def _state_message(result: NodeResult) -> str:
    """What a user wants next to the state: dbt's message, rows affected, failing rows of a test."""
    parts = [result.message or result.status]
    if result.rows_affected is not None:
        parts.append(f"rows affected: {result.rows_affected}")
    if result.failures:
        parts.append(f"failing rows: {result.failures}")
    return "; ".join(parts)
