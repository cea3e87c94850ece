"""Run one dbt command in this process and describe its outcome with our own small types.

dbt runs through its programmatic entry point, `dbtRunner`, not a subprocess: no second Python
start-up and no second parse per step, and dbt's events reach us as they happen (callbacks).
Callers get frozen dataclasses rather than dbt's objects, whose shape changes between versions.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbt.artifacts.schemas.freshness import FreshnessResult
from dbt.artifacts.schemas.run import RunExecutionResult
from dbt.cli.main import dbtRunner
from dbt.constants import RUN_RESULTS_FILE_NAME, SOURCE_RESULT_FILE_NAME
from dbt.contracts.graph.manifest import Manifest
from dbt.parser import manifest as dbt_manifest
from dbt_common.events.base_types import EventMsg

from dbt_pipeline import embedded_dbt
from dbt_pipeline.failures import is_transient
from dbt_pipeline.interrupts import TimeLimitReached, interruption_behind, sigterm_interrupts_dbt, time_limit
from dbt_pipeline.node_status import NodeOutcome, outcome_of

# BigQuery's own error when a query would bill more than `maximum_bytes_billed`.
BYTES_BILLED_LIMIT = re.compile(r"exceeded limit for bytes billed", re.IGNORECASE)


@dataclass(frozen=True)
class NodeResult:
    """What dbt reported for one node (model, seed, snapshot or test) of a command."""

    unique_id: str
    name: str
    resource_type: str
    status: str
    message: str | None
    execution_time: float
    failures: int | None = None
    adapter_response: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    thread: str = ""
    transient: bool = False  # the node's error says the warehouse was unavailable (see failures.py)

    @property
    def failed(self) -> bool:
        """Whether this node made the command fail."""
        return outcome_of(self.status) is NodeOutcome.FAILED

    @property
    def rows_affected(self) -> int | None:
        """Rows the node wrote, when the adapter reports it (seeds everywhere; models on some adapters)."""
        rows = self.adapter_response.get("rows_affected")
        return rows if isinstance(rows, int) and rows >= 0 else None


@dataclass(frozen=True)
class DbtCommandResult:
    """The outcome of one dbt command.

    Attributes:
        command: The command line, as a user would type it to reproduce the step.
        success: dbt's own verdict.
        nodes: One entry per node dbt reported on, in dbt's order.
        error: Why dbt could not run at all (bad profile, compile error...), if that happened.
        log_path: Where dbt wrote its debug log.
        manifest: The project as dbt parsed it, when the command was `dbt parse`: later commands of
            the run are handed it rather than parsing again.
    """

    command: str
    success: bool
    nodes: tuple[NodeResult, ...]
    error: str | None
    log_path: Path
    error_is_transient: bool = False
    stopped_at_time_limit: bool = False
    running_when_stopped: tuple[str, ...] = ()
    manifest: Manifest | None = field(default=None, repr=False, compare=False)

    @property
    def failed_nodes(self) -> tuple[NodeResult, ...]:
        """The nodes that errored or whose test failed."""
        return tuple(node for node in self.nodes if node.failed)

    @property
    def is_transient_failure(self) -> bool:
        """Whether every reason for failure says the warehouse was unavailable.

        SQL errors, compilation errors and failing tests fail the same way each time, so retrying
        them only wastes warehouse time; a held lock or an HTTP 503 may be gone a few seconds later.
        A failed node whose exception was not seen (a failing test, say) is never transient.
        """
        if self.success:
            return False
        verdicts = [node.transient for node in self.failed_nodes]
        if self.error:
            verdicts.append(self.error_is_transient)
        return bool(verdicts) and all(verdicts)

    def describe_failure(self) -> str:
        """A message naming the command, each failed node with its error, and where the log is."""
        lines = [f"`{self.command}` failed."]
        if self.stopped_at_time_limit:
            running = ", ".join(self.running_when_stopped) or "no node (dbt was between nodes)"
            lines[0] = f"`{self.command}` was {self.error}: its queries were cancelled."
            lines.append(f"Running at that moment: {running}")
        elif self.error:
            lines.append(f"dbt could not run: {self.error}")
        failed = self.failed_nodes
        if failed:
            lines.append(f"{len(failed)} of {len(self.nodes)} nodes failed:")
            lines.extend(f"  - {node.unique_id} ({node.status}): {_first_lines(node.message)}" for node in failed)
        if any(BYTES_BILLED_LIMIT.search(node.message or "") for node in failed):
            lines.append(
                "Cost guard: BigQuery refused a query that would bill more than the target's maximum_bytes_billed. "
                "Make the model cheaper (partitions, filters) or raise maximum_bytes_billed in the environments file."
            )
        lines.append(f"dbt's full log: {self.log_path}")
        return "\n".join(lines)


EventCallback = Callable[[EventMsg], None]


def invoke_dbt(
    args: Sequence[str],
    *,
    command: str,
    project_dir: Path,
    callbacks: Sequence[EventCallback] = (),
    timeout_seconds: float | None = None,
    explain_error: Callable[[BaseException], str | None] | None = None,
    manifest: Manifest | None = None,
    results_to: Path | None = None,
) -> DbtCommandResult:
    """Run `dbt <args>` in-process and return its outcome; dbt's exceptions become `error`.

    `command` is how the step reads to a user (e.g. `dbt run --target dev`), for messages. A signal
    (Ctrl-C, SIGTERM) cancels the warehouse query and is raised again, never returned as a failure.
    Past `timeout_seconds` the command is stopped the same way and fails (`stopped_at_time_limit`).
    `explain_error` may turn the exception that stopped dbt into a better message than its text
    (dbt's exceptions carry attributes, a git package's URL say, that their text leaves out).
    `manifest`, from an earlier `dbt parse` of the same project, profile and target, spares the
    command its parsing: dbt registers the adapter and uses it as it is (dbtRunner's documented use).
    `results_to`, the command's target folder, receives its results file (`write_results`), which a
    command run with `--no-write-json` leaves unwritten.
    """
    embedded_dbt.install()  # dbt's costs of running embedded, cut before it creates its adapter
    node_errors = _NodeErrorClassifier()
    running = _RunningNodes()
    with sigterm_interrupts_dbt() as reraise_interrupt, time_limit(timeout_seconds), _log_write_errors_dropped():
        outcome = dbtRunner(manifest=manifest, callbacks=[node_errors, running, *callbacks]).invoke(list(args))
    interruption = interruption_behind(outcome.exception)
    reraise_interrupt(interruption)
    if results_to is not None:
        write_results(outcome.result, results_to)
    stopped = isinstance(interruption, TimeLimitReached)
    error = None
    if stopped:
        error = f"stopped after its time limit of {timeout_seconds:g} s"
    elif outcome.exception is not None:
        explained = explain_error(outcome.exception) if explain_error is not None else None
        error = explained or f"{type(outcome.exception).__name__}: {outcome.exception}"
    return DbtCommandResult(
        command=command,
        success=outcome.success,
        nodes=_node_results(outcome.result, node_errors.transient),
        error=error,
        log_path=project_dir / "logs" / "dbt.log",
        error_is_transient=outcome.exception is not None and is_transient(outcome.exception),
        stopped_at_time_limit=stopped,
        running_when_stopped=running.when_stopped if stopped else (),
        manifest=outcome.result if isinstance(outcome.result, Manifest) else None,
    )


@contextmanager
def _log_write_errors_dropped() -> Iterator[None]:
    """Drop, for the command, the lines dbt's log handlers cannot write, instead of printing each with a traceback.

    dbt writes every event to logs/dbt.log. When that disk is full, each write fails and Python's logging prints
    `--- Logging error ---` and a traceback per event on stderr: 5,778 of them, 356,000 lines, for one run of the
    example project, burying what matters. What does matter is said once: a step that cannot write its own files
    fails, and the run's error says that the disk is full and what to free (DiskFullError).
    """
    reported = logging.raiseExceptions
    logging.raiseExceptions = False
    try:
        yield
    finally:
        logging.raiseExceptions = reported


def write_results(result: object, target_path: Path) -> None:
    """Write a command's results where dbt writes them: run_results.json, or sources.json for source freshness.

    The run's commands run with `--no-write-json`, since dbt would also write the whole manifest at the end
    of each (the costliest part of a small run, and of every run of a large project); the run writes the
    manifest once (`write_manifest`). The file is dbt's own serialisation of the object dbt returned,
    except that `write_json` is left out of the arguments it records: a `dbt retry` typed by hand, which
    takes them from this file, then writes its artifacts as dbt does by default.
    A command stopped by an error or an interrupt returns no results, and leaves no file.
    """
    with _log_write_errors_dropped():  # dbt logs each file it writes
        if isinstance(result, RunExecutionResult):
            arguments = {name: value for name, value in result.args.items() if name != "write_json"}
            replace(result, args=arguments).write(str(target_path / RUN_RESULTS_FILE_NAME))
        elif isinstance(result, FreshnessResult):
            result.write(str(target_path / SOURCE_RESULT_FILE_NAME))  # type: ignore[no-untyped-call]  # dbt leaves it untyped


def write_manifest(manifest: Manifest, target_path: Path) -> None:
    """Write manifest.json (and semantic_manifest.json) as a dbt command does at its end, with the nodes as the
    run's commands compiled them."""
    with _log_write_errors_dropped():  # dbt logs each file it writes
        dbt_manifest.write_manifest(manifest, str(target_path))


class _RunningNodes:
    """A dbt event callback keeping the nodes that have started and not finished, in start order.

    When dbt is interrupted it cancels the open queries (one `LogCancelLine` each) before it marks
    their nodes finished: the nodes running then are kept as `at_cancel`.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, None] = {}
        self.at_cancel: tuple[str, ...] | None = None

    def __call__(self, event: EventMsg) -> None:
        name = event.info.name
        if name == "NodeStart":
            self.nodes[event.data.node_info.unique_id] = None
        elif name == "NodeFinished":
            self.nodes.pop(event.data.node_info.unique_id, None)
        elif name == "LogCancelLine" and self.at_cancel is None:
            self.at_cancel = tuple(self.nodes)

    @property
    def when_stopped(self) -> tuple[str, ...]:
        return self.at_cancel if self.at_cancel is not None else tuple(self.nodes)


class _NodeErrorClassifier:
    """A dbt event callback that classifies the exception behind each node error.

    dbt keeps only the text of a node's exception in its results. It fires one of these events from
    inside the `except` block that caught the exception, in the node's thread, and calls callbacks
    synchronously: so `sys.exc_info()` is that exception, with the driver's error as its cause.
    """

    EVENTS = frozenset({"CatchableExceptionOnRun", "InternalErrorOnRun", "GenericExceptionOnRun"})

    def __init__(self) -> None:
        self.transient: dict[str, bool] = {}

    def __call__(self, event: EventMsg) -> None:
        if event.info.name not in self.EVENTS:
            return
        error = sys.exc_info()[1]
        unique_id = event.data.node_info.unique_id
        if error is not None and unique_id:
            self.transient[unique_id] = is_transient(error)


def _node_results(result: object, transient: dict[str, bool]) -> tuple[NodeResult, ...]:
    """Node results of the commands that have them (seed, run, test, snapshot, build); else none."""
    results = getattr(result, "results", None) or ()
    return tuple(
        NodeResult(
            unique_id=item.node.unique_id,
            name=item.node.name,
            resource_type=str(item.node.resource_type),
            status=str(item.status),
            message=item.message,
            execution_time=float(item.execution_time or 0.0),
            failures=item.failures,
            adapter_response=dict(item.adapter_response or {}),
            started_at=_timing(item, "started_at"),
            completed_at=_timing(item, "completed_at"),
            thread=str(getattr(item, "thread_id", "") or ""),
            transient=transient.get(item.node.unique_id, False),
        )
        for item in results
        if getattr(item, "node", None) is not None
    )


def _timing(item: Any, edge: str) -> datetime | None:
    """When a node started (its compile) or completed (its execute), from dbt's timing info."""
    timings = [timing for timing in getattr(item, "timing", None) or () if getattr(timing, edge, None)]
    if not timings:
        return None
    value: datetime = getattr(timings[0] if edge == "started_at" else timings[-1], edge)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _first_lines(message: str | None, limit: int = 3) -> str:
    if not message:
        return "(no message)"
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return " | ".join(lines[:limit])
