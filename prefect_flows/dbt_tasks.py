"""The dbt steps of the pipeline as Prefect tasks.

Each step is one in-process dbt command. Its log lines go to the task's Prefect logger, so the
Prefect UI shows what dbt printed; its failure raises an error that names every failed node.
Only failures that look transient (a held lock, a timeout, HTTP 429/5xx) go on to the task's
retries: a SQL error or a failing test fails the same way every time.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from dbt_common.events.base_types import EventMsg
from prefect import State, Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext

from dbt_pipeline.dbt_invocation import DbtCommandResult, EventCallback, invoke_dbt
from dbt_pipeline.dbt_project import DbtProject
from dbt_pipeline.errors import DbtRunError, TransientDbtRunError
from prefect_flows.node_runs import NodeRunReporter

# dbt's event levels, as Python logging levels; "debug" events stay in dbt's own log file.
_LOG_LEVELS = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
# dbt's line per node ("1 of 28 START ...", "1 of 28 OK created ..."): each node is its own task run
# already, so these go to DEBUG; at INFO they would double the logs and cost time on large projects.
_PER_NODE_EVENTS = frozenset(
    {"LogStartLine", "LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult", "LogNodeResult",
     "LogNodeNoOpResult", "LogFreshnessResult", "SkippingDetails"}
)  # fmt: skip


@dataclass(frozen=True)
class DbtInvocation:
    """What every dbt command of one flow run shares: project, rendered profile and target."""

    project: DbtProject
    profiles_dir: Path
    target: str

    def args(self, command: Sequence[str], *, target_path: str | None = "") -> list[str]:
        """The full argument list for `dbt <command>` in this run.

        `target_path` defaults to `target/<target>`; None leaves it out (`dbt debug` refuses it).
        """
        if target_path == "":
            target_path = f"target/{self.target}"
        return [
            *command,
            "--project-dir", str(self.project.path),
            "--profiles-dir", str(self.profiles_dir),
            "--profile", self.project.profile,
            "--target", self.target,
            # dbt's lines reach the console through Prefect's logger; dbt's own stdout would double them.
            "--log-level", "none",
            # ...but its debug log file stays, as with the dbt CLI: error messages point at it.
            "--log-level-file", "debug",
            "--no-use-colors",
            # No network calls a run does not need: offline they only add a timeout.
            "--no-send-anonymous-usage-stats",
            # One folder of artifacts per target: dev and prod runs never overwrite each other.
            *(("--target-path", target_path) if target_path else ()),
        ]  # fmt: skip


@dataclass(frozen=True)
class DbtStep:
    """One dbt command of the pipeline, e.g. `seed` or `docs generate`.

    Attributes:
        name: The step's name; its task is called `dbt-{name}`.
        command: The dbt command and its step-specific arguments.
        runs_nodes: Whether the step builds or tests nodes, each then shown as a task run
            (docs generate only compiles them, deps has none).
    """

    name: str
    command: tuple[str, ...]
    runs_nodes: bool = True


def plan_steps(
    project: DbtProject, *, select: str | None = None, exclude: str | None = None, full_refresh: bool = False
) -> list[DbtStep]:
    """The seed's steps, in order: deps (if the project has packages), seed, snapshot, run, test, docs."""
    selection = (("--select", select) if select else ()) + (("--exclude", exclude) if exclude else ())
    refresh = ("--full-refresh",) if full_refresh else ()
    steps = [DbtStep("deps", ("deps",), runs_nodes=False)] if project.has_packages else []
    steps += [
        DbtStep("seed", ("seed", *selection, *refresh)),
        DbtStep("snapshot", ("snapshot", *selection)),
        DbtStep("run", ("run", *selection, *refresh)),
        DbtStep("test", ("test", *selection)),
        DbtStep("docs-generate", ("docs", "generate"), runs_nodes=False),
    ]
    return steps


def retry_only_transient_failures(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Let the task's retry policy act only on failures that another attempt could fix."""
    return isinstance(state.result(raise_on_failure=False), TransientDbtRunError)


# The failed attempt of each step task run, kept until the next attempt of the same task run (in
# this process: Prefect runs the retries of a task run in place, one after the other).
_failed_attempts: dict[UUID, DbtCommandResult] = {}


@task(cache_policy=NO_CACHE, retry_condition_fn=retry_only_transient_failures)
def run_dbt_step(step: DbtStep, invocation: DbtInvocation) -> DbtCommandResult:
    """Run one dbt step; raise if it failed, naming the failed nodes and their errors.

    A retry reruns only what did not succeed (`dbt retry`, from the failed attempt's
    run_results.json) when that attempt got as far as running nodes; otherwise the whole step.
    """
    logger = get_run_logger()
    task_run = TaskRunContext.get().task_run  # type: ignore[union-attr]
    previous = _failed_attempts.pop(task_run.id, None)
    command = ("retry",) if previous is not None and previous.failed_nodes else step.command
    if previous is not None:
        logger.info(
            "Attempt %d: %s",
            task_run.run_count,
            "rerunning only failed and skipped nodes (dbt retry)"
            if command == ("retry",)
            else "rerunning the whole step",
        )
    callbacks: list[EventCallback] = [_forward_to(logger)]
    reporter = None
    if step.runs_nodes and task_run.flow_run_id is not None:
        reporter = NodeRunReporter(task_run.flow_run_id, task_run.id, step.name, task_run.run_count)
    if reporter is not None:
        callbacks.append(reporter)
    result = invoke_dbt(
        invocation.args(command),
        command=shlex.join(["dbt", *command, "--target", invocation.target]),
        project_dir=invocation.project.path,
        callbacks=callbacks,
    )
    if reporter is not None:
        reporter.reconcile(result.nodes)
    if result.success:
        return result
    _failed_attempts[task_run.id] = result
    error = TransientDbtRunError if result.is_transient_failure else DbtRunError
    raise error(result.describe_failure(), result)


def _forward_to(logger: logging.LoggerAdapter[logging.Logger] | logging.Logger) -> EventCallback:
    """A dbt event callback writing dbt's info/warn/error lines to `logger` (from any dbt thread)."""

    def forward(event: EventMsg) -> None:
        info = event.info
        level = _LOG_LEVELS.get(info.level)
        if level is None or not info.msg:  # type: ignore[attr-defined]  # protobuf field, no stub
            return
        if level == logging.INFO and info.name in _PER_NODE_EVENTS:
            level = logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(level, info.msg)  # type: ignore[attr-defined]

    return forward
