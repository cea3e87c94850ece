"""The dbt steps of the pipeline as Prefect tasks.

Each step is one in-process dbt command. Its log lines go to the task's Prefect logger, so the
Prefect UI shows what dbt printed; its failure raises an error that names every failed node.
Only transient failures (a held lock, a lost connection, a rate limit or server error, decided
from the exceptions raised: dbt_pipeline.failures) go on to the task's retries: a SQL error, a
failing test or a query over its time limit fails the same way every time.
"""

from __future__ import annotations

import functools
import logging
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import click
from dbt.cli.main import cli as dbt_cli
from dbt.exceptions import GitCheckoutError, GitCloningError
from dbt_common.events.base_types import EventMsg
from dbt_common.exceptions.base import env_secrets, scrub_secrets
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
class TimeLimits:
    """A run's time limits: a deadline for the whole run and a limit per step (None: no limit).

    `run_deadline` is on the `time.monotonic()` clock of the process running the flow.
    """

    run_timeout_seconds: float | None = None
    step_timeout_seconds: float | None = None
    run_deadline: float | None = None

    @classmethod
    def starting_now(cls, run_timeout_seconds: float | None, step_timeout_seconds: float | None) -> TimeLimits:
        deadline = time.monotonic() + run_timeout_seconds if run_timeout_seconds is not None else None
        return cls(run_timeout_seconds, step_timeout_seconds, deadline)

    def for_next_step(self) -> tuple[float | None, str]:
        """The time the next step may take, and which limit that is (for the message if it is reached)."""
        left = self.run_deadline - time.monotonic() if self.run_deadline is not None else None
        if left is not None and (self.step_timeout_seconds is None or left < self.step_timeout_seconds):
            return max(left, 0.0), f"run_timeout_seconds = {self.run_timeout_seconds:g}"
        if self.step_timeout_seconds is not None:
            return self.step_timeout_seconds, f"step_timeout_seconds = {self.step_timeout_seconds:g}"
        return None, ""


@dataclass(frozen=True)
class DbtInvocation:
    """What every dbt command of one flow run shares: project, rendered profile and target."""

    project: DbtProject
    profiles_dir: Path
    target: str
    limits: TimeLimits = field(default_factory=TimeLimits)

    def args(self, command: Sequence[str], *, target_path: str | None = "") -> list[str]:
        """The full argument list for `dbt <command>` in this run.

        `target_path` defaults to `target/<target>`; None leaves it out. A command that refuses the
        flag (`dbt deps` and `dbt debug` write no artifacts) never gets it: dbt's own command line
        says which, so a dbt upgrade that changes its flags cannot break a step.
        """
        if target_path == "":
            target_path = f"target/{self.target}"
        if "--target-path" not in _options_of(tuple(command)):
            target_path = None
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


@functools.cache
def _options_of(command: tuple[str, ...]) -> frozenset[str]:
    """The flags `dbt <command>` takes, read from dbt's own click command (e.g. `deps`, `docs generate`)."""
    node: click.Command = dbt_cli
    for word in command:
        if not isinstance(node, click.Group) or word not in node.commands:
            break
        node = node.commands[word]
    return frozenset(option for parameter in node.params for option in parameter.opts)


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
    timeout, limit = invocation.limits.for_next_step()
    result = invoke_dbt(
        invocation.args(command),
        command=shlex.join(["dbt", *command, "--target", invocation.target]),
        project_dir=invocation.project.path,
        callbacks=callbacks,
        timeout_seconds=timeout,
        explain_error=functools.partial(_package_source_error, project=invocation.project),
    )
    if reporter is not None:
        reporter.reconcile(result.nodes)
    if result.success:
        return result
    _failed_attempts[task_run.id] = result
    if result.stopped_at_time_limit:
        raise DbtRunError(
            f"{result.describe_failure()}\nThe limit reached: {limit} s (in the environments file, or "
            "--run-timeout / --step-timeout). Make the slow nodes faster or raise it.",
            result,
        )
    error = TransientDbtRunError if result.is_transient_failure else DbtRunError
    raise error(result.describe_failure(), result)


def _package_source_error(error: BaseException, project: DbtProject) -> str | None:
    """Name the git package `dbt deps` could not fetch and the fix, or None for any other error.

    dbt's own text says "Internal Error" and, for a clone, `spec='None'` whatever the revision:
    the package's URL, git's diagnosis and where to fix it are what a user needs.
    """
    if isinstance(error, GitCloningError):
        said, problem = error.error.stderr, "git could not clone it"
        fix = "check its `git:` URL and that this machine can reach it (network, proxy, credentials)"
    elif isinstance(error, GitCheckoutError):  # cloned, but the revision is not in the repository
        said, problem = error.stderr, f"the repository has no revision {error.revision!r}"
        fix = "check its `revision:` (a tag, branch or commit of that repository)"
    else:
        return None
    repository = _without_password(str(error.repo))
    files = " or ".join(str(path) for path in project.package_files) or "packages.yml"
    # git's first diagnosis ("fatal: ... does not appear to be a git repository", "Could not resolve host").
    diagnosis = next((line.strip() for line in str(said).splitlines() if line.startswith(("fatal:", "error:"))), "")
    if diagnosis:
        problem += f" ({diagnosis.partition(': ')[2].replace(str(error.repo), repository)})"
    return _scrubbed(
        f"the package {repository} declared in {files} could not be fetched: {problem}. "
        f"Fix: {fix}, or run `cd {project.path} && dbt deps` to see git's full output."
    )


def _without_password(url: str) -> str:
    """A git URL without the token its user part may carry (https://token@host/..., https://user:token@host/...)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc or (parts.password is None and parts.scheme not in ("http", "https")):
        return url  # ssh://git@host/... names a user, not a secret
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def _scrubbed(text: str) -> str:
    """`text` without the values of DBT_ENV_SECRET_* variables, as dbt scrubs its own messages."""
    return str(scrub_secrets(text, env_secrets()))


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
