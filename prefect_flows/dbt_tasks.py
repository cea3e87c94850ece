"""The dbt steps of the pipeline as Prefect tasks.

Each step is one in-process dbt command. Its log lines go to the task's Prefect logger, so the
Prefect UI shows what dbt printed: a compact progress line per node, dbt's banner once per run, and
its verdict; a failed step ends Failed with an error that names every failed node.
Only transient failures (a held lock, a lost connection, a rate limit or server error, decided
from the exceptions raised: dbt_pipeline.failures) go on to the task's retries: a SQL error, a
failing test or a query over its time limit fails the same way every time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from dbt.contracts.graph.manifest import Manifest
from dbt.contracts.graph.nodes import CompiledNode
from dbt.exceptions import GitCheckoutError, GitCloningError
from dbt_common.events.base_types import EventMsg
from dbt_common.exceptions.base import env_secrets, scrub_secrets
from prefect import State, Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.states import Failed

from dbt_pipeline.dbt_arguments import DbtInvocation
from dbt_pipeline.dbt_events import LOG_LEVELS, RESULT_EVENTS
from dbt_pipeline.dbt_invocation import DbtCommandResult, EventCallback, NodeResult, invoke_dbt
from dbt_pipeline.dbt_project import DbtProject
from dbt_pipeline.errors import DbtRunError, StaleSourcesError, TransientDbtRunError
from dbt_pipeline.interrupts import StopRequested, TimeLimitReached
from dbt_pipeline.node_status import NodeOutcome, NodeStatus, outcome_of
from dbt_pipeline.run_history import nodes_text
from dbt_pipeline.settings import RunMode
from prefect_flows.node_runs import NodeRunReporter

# dbt's result events (dbt_pipeline.dbt_events): one compact progress line each (`[1/28] ok     orders  0.12 s`),
# at the level dbt gives it; dbt's own line at DEBUG.
# dbt's lines per node: DEBUG (the node's progress line says when it ended, its result).
_PER_NODE_EVENTS = frozenset({"LogStartLine"}) | RESULT_EVENTS
# dbt's banner, the same for every command of a run ("Running with dbt=", "Registered adapter", "Found 28
# models, ...", "Concurrency: 1 threads"): said by the first step that prints each line, DEBUG afterwards.
_BANNER_EVENTS = frozenset({"MainReportVersion", "AdapterRegistered", "FoundStats", "ConcurrencyLine"})
# dbt's details of a failure that the command's last message says again (each failed node and its error, the
# error that stopped dbt; its stack trace is in dbt's log, which that message names): their records are marked,
# so that the command's console leaves them out. The run's logs in Prefect keep them.
_FAILURE_DETAIL_EVENTS = frozenset(
    {"RunResultFailure", "RunResultError", "RunResultErrorNoMessage", "SQLCompiledPath", "CheckNodeTestFailure",
     "MainEncounteredError", "MainStackTrace"}
)  # fmt: skip
# The attribute of a log record that the command's last message says again (see prefect_flows.pipeline.main).
REPEATED_AT_THE_END = "repeated_at_the_end"
# How dbt says it was interrupted ("Encountered an error: SIGTERM" and a stack trace at ERROR): DEBUG, and the
# step says once, in its own words, that it was stopped.
_INTERRUPTION_EVENTS = frozenset({"MainEncounteredError", "MainStackTrace"})
# dbt's status of a node result event, in a word; any other is the adapter's message of a success ("OK",
# "INSERT 42", "CREATE TABLE (10.0 rows, 1.2 KiB processed)"), which reads "ok".
_STATUS_WORDS: dict[str, str] = {
    NodeStatus.Error: "error", NodeStatus.RuntimeErr: "error", NodeStatus.Fail: "fail", NodeStatus.Warn: "warn",
    NodeStatus.Pass: "pass", NodeStatus.Skipped: "skip", NodeStatus.NoOp: "no-op", NodeStatus.PartialSuccess: "partial",
}  # fmt: skip


# dbt's end-of-run verdict on the nodes ("Runtime Error in source ...", "Completed with 7 errors").
_VERDICT_EVENTS = frozenset(
    {"RunResultError", "RunResultErrorNoMessage", "RunResultFailure", "RunResultWarning", "RunResultWarningMessage",
     "EndOfRunSummary"}
)  # fmt: skip


@dataclass(frozen=True)
class DbtStep:
    """One dbt command of the pipeline, e.g. `seed` or `docs generate`.

    Attributes:
        name: The step's name; its task is called `dbt-{name}`.
        command: The dbt command and its step-specific arguments.
        runs_nodes: Whether the step builds or tests nodes, each then shown as a task run
            (docs generate only compiles them, deps has none).
        judges_nodes: Whether a failed node fails the step (source freshness leaves its verdict to
            the environment's `on_stale_source`).
        retry_of: For a step of a `--retry-failed` run, the run_results.json (of the run it resumes) whose
            failed and skipped nodes it reruns, with `dbt retry`; its command is then `retry`.
        compile_first: Selectors of nodes the step compiles (`dbt compile`) before its command: for docs
            generate, the nodes the run's steps left uncompiled (see `without_recompiling`).
    """

    name: str
    command: tuple[str, ...]
    runs_nodes: bool = True
    judges_nodes: bool = True
    retry_of: Path | None = None
    compile_first: tuple[str, ...] = ()

    @property
    def is_node_step(self) -> bool:
        """Whether the step builds or tests the run's nodes (seed, snapshot, run, test, build): a failed node
        fails it, and `--retry-failed` resumes it."""
        return self.runs_nodes and self.judges_nodes


def plan_steps(
    project: DbtProject,
    *,
    mode: RunMode = "steps",
    select: str | None = None,
    exclude: str | None = None,
    full_refresh: bool = False,
    state: Path | None = None,
) -> list[DbtStep]:
    """The run's dbt commands, in order.

    `steps` mode runs the seed's commands: deps (if the project has packages), seed, snapshot, run,
    test, docs generate. `build` mode runs one `dbt build` in place of seed to test: dbt then tests
    each node as soon as it is built and skips only the descendants of a failure, where `steps` mode
    builds every model before any test runs.

    A `parse` step comes first (after deps, which installs the packages it reads): the manifest it
    builds is handed to every later step, so the project is parsed once per run instead of once per
    dbt command, and a project that does not parse fails there, before anything is built.

    `state`, a folder holding a previous run's artifacts, is given to the node steps as dbt's
    `--state` with `--defer`: `state:` / `result:` / `source_status:` selectors compare with it, and
    a model built on an unselected parent that this target lacks reads the state's relation.
    """
    selection = (("--select", select) if select else ()) + (("--exclude", exclude) if exclude else ())
    selection += ("--state", str(state), "--defer") if state is not None else ()
    refresh = ("--full-refresh",) if full_refresh else ()
    steps = [DbtStep("deps", ("deps",), runs_nodes=False)] if project.has_packages else []
    steps.append(DbtStep("parse", ("parse",), runs_nodes=False))
    steps.append(FRESHNESS_STEP)  # run only when the project declares freshness (declares_freshness)
    if mode == "build":
        steps.append(DbtStep("build", ("build", *selection, *refresh)))
    else:
        steps += [
            DbtStep("seed", ("seed", *selection, *refresh)),
            DbtStep("snapshot", ("snapshot", *selection)),
            DbtStep("run", ("run", *selection, *refresh)),
            DbtStep("test", ("test", *selection)),
        ]
    steps.append(DbtStep("docs-generate", ("docs", "generate"), runs_nodes=False))
    return steps


FRESHNESS_STEP = DbtStep("source-freshness", ("source", "freshness"), judges_nodes=False)


def declares_freshness(manifest: Manifest | None) -> bool:
    """Whether any source of the project has a freshness rule to check (a warn_after or an error_after)."""
    if manifest is None:
        return False
    rules = (source.freshness for source in manifest.sources.values() if source.freshness is not None)
    return any(after is not None and after.count for rule in rules for after in (rule.warn_after, rule.error_after))


def stale_sources(result: DbtCommandResult) -> list[NodeResult]:
    """The sources a freshness step found past their `error_after`."""
    return [node for node in result.nodes if node.status == NodeStatus.Error]


def source_name(node: NodeResult) -> str:
    """A source's `<source>.<table>` name, as dbt's `source:` selector takes it (from its unique id)."""
    return ".".join(node.unique_id.split(".")[2:])


def without_stale_sources(step: DbtStep, stale: Sequence[NodeResult]) -> DbtStep:
    """A node step that leaves out the stale sources and everything built on them (dbt's `--exclude source:x+`).

    Not a `dbt retry` (which takes no selection): it reruns the nodes the resumed run selected.
    """
    if not step.runs_nodes or not stale or step is FRESHNESS_STEP or step.retry_of is not None:
        return step
    selectors = " ".join(f"source:{source_name(node)}+" for node in stale)
    return dataclasses.replace(step, command=(*step.command, "--exclude", selectors))


def without_recompiling(step: DbtStep, manifest: Manifest | None) -> DbtStep:
    """`docs generate --no-compile`, after compiling only what this run's steps left uncompiled, when that is less
    than what they compiled.

    Docs generate compiles every node again before it reads the catalog: on 1,001 nodes that was two
    thirds of its time. The steps before it compiled their nodes into the manifest the run hands from
    step to step (dbt fills in each node's compiled code in place), so only the nodes they did not run
    need compiling (an analysis, which no step runs; the nodes a --select left out), by a `dbt compile`
    of those alone (`compile_first`), and the manifest is then the docs' own. When the steps compiled
    fewer nodes than they left (a small --select), docs generate compiles them all, as dbt does.
    """
    if step.command != ("docs", "generate") or manifest is None:
        return step
    compilable = [node for node in manifest.nodes.values() if isinstance(node, CompiledNode)]
    left = [node for node in compilable if not node.compiled]
    if len(left) >= len(compilable) - len(left):
        return step
    return dataclasses.replace(
        step, command=(*step.command, "--no-compile"), compile_first=tuple(_fqn_selector(node) for node in left)
    )


def _fqn_selector(node: CompiledNode) -> str:
    """dbt's selector of `node` by its fully qualified name (`fqn:<package>.<folders>.<name>[.<version>]`)."""
    return "fqn:" + ".".join(node.fqn)


def command_for_attempt(step: DbtStep, run_results: Path, attempt: int) -> tuple[str, ...]:
    """The dbt command of a step's `attempt` (1 for the first): the step's own, or `retry` after failed nodes.

    The decision reads what the failed attempt left, never memory of it: the first attempt of a node step
    removes the run_results.json of the commands before it (the flow keeps a copy of each step's), so a file
    found by a later attempt is the failed attempt's own. A step without nodes (deps, parse, docs generate)
    writes none and leaves it: after a run, the target's run_results.json is the last node step's, as a
    sequence of dbt commands leaves it. dbt's `retry` reruns the nodes it lists as failed
    or skipped; when it lists none (dbt failed before running nodes: a lost connection, a held lock),
    the whole step runs again. A step of a `--retry-failed` run (`retry_of`) puts the resumed run's
    run_results.json in place first, since `dbt retry` reads the target's.
    """
    if step.retry_of is not None and (attempt <= 1 or not _failed_nodes_in(run_results)):
        shutil.copyfile(step.retry_of, run_results)
        return ("retry",)
    if attempt <= 1:
        if step.runs_nodes:
            run_results.unlink(missing_ok=True)
        return step.command
    if step.runs_nodes and _failed_nodes_in(run_results):
        return ("retry",)
    return step.command


def _failed_nodes_in(run_results: Path) -> bool:
    """Whether the run_results.json at `run_results` lists a failed node (False when there is none)."""
    try:
        document = json.loads(run_results.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any(outcome_of(str(node.get("status"))) is NodeOutcome.FAILED for node in document.get("results", []))


def retry_only_transient_failures(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Let the task's retry policy act only on failures that another attempt could fix."""
    return isinstance(state.result(raise_on_failure=False), TransientDbtRunError)


@task(cache_policy=NO_CACHE, retry_condition_fn=retry_only_transient_failures)
def run_dbt_step(step: DbtStep, invocation: DbtInvocation) -> DbtCommandResult | State[Any]:
    """Run one dbt step; end Failed if it failed, with an error naming the failed nodes and their errors.

    A retry reruns only what did not succeed (`dbt retry`) when the failed attempt got as far as
    running nodes; otherwise the whole step (see `command_for_attempt`).
    """
    logger = get_run_logger()
    task_run = TaskRunContext.get().task_run  # type: ignore[union-attr]
    command = command_for_attempt(step, invocation.target_path / "run_results.json", task_run.run_count)
    if task_run.run_count > 1:
        logger.info(
            "Attempt %d: %s",
            task_run.run_count,
            "rerunning only failed and skipped nodes (dbt retry)"
            if command == ("retry",)
            else "rerunning the whole step",
        )
    forward = _forward_to(
        logger,
        verdict_elsewhere=not step.judges_nodes,
        banner_shown=_banner_shown_in(task_run.flow_run_id),
        announce_nodes=step.runs_nodes,
    )
    callbacks: list[EventCallback] = [forward]
    reporter = None
    if step.runs_nodes and task_run.flow_run_id is not None:
        reporter = NodeRunReporter(task_run.flow_run_id, task_run.id, step.name, task_run.run_count, invocation)
    if reporter is not None:
        callbacks.append(reporter)
    timeout, limit = invocation.limits.for_next_step()
    deadline = time.monotonic() + timeout if timeout is not None else None
    result = None
    if step.compile_first and command == step.command:
        result = _compile_first(step, invocation, timeout)
    if result is None or result.success:
        result = invoke_dbt(
            invocation.args(command),
            command=shlex.join(["dbt", *command, "--target", invocation.target]),
            project_dir=invocation.project.path,
            callbacks=callbacks,
            timeout_seconds=max(deadline - time.monotonic(), 0.0) if deadline is not None else None,
            explain_error=functools.partial(_package_source_error, project=invocation.project),
            manifest=invocation.manifest,
            results_to=invocation.target_path,
        )
    if reporter is not None:
        reporter.reconcile(result.nodes)
    if result.success:
        return result
    if not step.judges_nodes and result.error is None and not result.stopped_at_time_limit:
        # Its failed nodes (stale sources) are judged by the flow, with the environment's on_stale_source.
        return dataclasses.replace(result, success=True)
    error = _error_of(result, limit)
    if isinstance(error, TransientDbtRunError) and task_run.run_count <= _retries_of_this_task():
        # Said now: the command's last message says only the last attempt's failure.
        logger.warning("%s\nThe warehouse was unavailable: the step is retried.", error)
    return _failed(error)


def _compile_first(step: DbtStep, invocation: DbtInvocation, timeout: float | None) -> DbtCommandResult:
    """Compile the nodes `step.compile_first` selects into the run's manifest, quietly: dbt would print each
    compiled node's SQL; a node that does not compile fails the step as it would have failed docs generate."""
    get_run_logger().info(
        "Compiling %s that the run's steps did not run, for the docs", nodes_text(len(step.compile_first))
    )
    command = ("compile", "--select", *step.compile_first)
    return invoke_dbt(
        invocation.args(command),
        command=shlex.join(["dbt", *command, "--target", invocation.target]),
        project_dir=invocation.project.path,
        timeout_seconds=timeout,
        manifest=invocation.manifest,
    )


def _error_of(result: DbtCommandResult, limit: str) -> DbtRunError:
    """The error of a failed step: transient (worth a retry) or not, naming the time limit it reached if any."""
    if result.stopped_at_time_limit:
        return DbtRunError(
            f"{result.describe_failure()}\nThe limit reached: {limit} s (in the environments file, or "
            "--run-timeout / --step-timeout). Make the slow nodes faster or raise it.",
            result,
        )
    error = TransientDbtRunError if result.is_transient_failure else DbtRunError
    return error(result.describe_failure(), result)


def _retries_of_this_task() -> int:
    context = TaskRunContext.get()
    return context.task.retries if context is not None else 0


def _failed(error: DbtRunError) -> State[Any]:
    """The Failed state a failed step returns: its message one line, its data the error (for the flow, and for the
    retry decision).

    Returned rather than raised: Prefect's task engine logs a raised exception with its traceback, and its
    state's message would be the whole error, which the engine logs again ("Finished in state Failed(...)").
    """
    return Failed(message=failure_headline(error), data=error)


def failure_headline(error: BaseException) -> str:
    """The first line of an error, with how many nodes failed and which (not their errors): a state's message.

    Each failed node's error is said once, in full, by the flow's log and the command's last message.
    """
    first = str(error).partition("\n")[0]
    result = getattr(error, "result", None)
    if isinstance(error, StaleSourcesError) or not isinstance(result, DbtCommandResult) or not result.failed_nodes:
        return first
    failed = result.failed_nodes
    names = ", ".join(node.name for node in failed[:3]) + (", ..." if len(failed) > 3 else "")
    return f"{first.removesuffix('.')}: {len(failed)} of {len(result.nodes)} nodes failed ({names})."


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


StepLogger = logging.LoggerAdapter[logging.Logger] | logging.Logger


def _forward_to(
    logger: StepLogger,
    *,
    verdict_elsewhere: bool = False,
    banner_shown: set[str] | None = None,
    announce_nodes: bool = False,
) -> EventCallback:
    """A dbt event callback writing dbt's info/warn/error lines to `logger` (from any dbt thread), compactly.

    Each node's result is one progress line (`progress_line`); dbt's banner lines are said once per run:
    `banner_shown` holds those said already by the run's earlier steps (none given: all are said).
    `announce_nodes`: say how many nodes the step runs when dbt starts running them.
    `verdict_elsewhere`: the flow judges the step's nodes and says what they mean (source freshness),
    so dbt's own per-node lines and its end-of-run verdict go to DEBUG instead of repeating it as errors.
    """
    return _Forwarder(logger, verdict_elsewhere, set() if banner_shown is None else banner_shown, announce_nodes)


@dataclass
class _Forwarder:
    """dbt's events as a step's log lines (see `_forward_to`)."""

    logger: StepLogger
    verdict_elsewhere: bool
    banner_shown: set[str]
    announce_nodes: bool

    def __call__(self, event: EventMsg) -> None:
        name = event.info.name
        if name in RESULT_EVENTS:
            level = logging.DEBUG if self.verdict_elsewhere else LOG_LEVELS.get(event.info.level, logging.INFO)
            # Not sent to the API: in the UI each node is a task run of the step, with its own lines.
            self._log(level, progress_line(event), extra={"send_to_api": False})
        self._forward(event)
        if name == "ConcurrencyLine" and self.announce_nodes:
            count = event.data.node_count
            self._log(logging.INFO, f"Running {count} node{'' if count == 1 else 's'}")
        elif name == "MainEncounteredError" and isinstance(stop := sys.exc_info()[1], KeyboardInterrupt):
            self._say_stopped(stop)

    def _forward(self, event: EventMsg) -> None:
        info = event.info
        level = LOG_LEVELS.get(info.level)
        if level is None or not info.msg:  # type: ignore[attr-defined]  # protobuf field, no stub
            return
        repeated = {REPEATED_AT_THE_END: True} if _said_again_at_the_end(event) else None
        self._log(self._level_of(event, level), info.msg, extra=repeated)  # type: ignore[attr-defined]

    def _level_of(self, event: EventMsg, level: int) -> int:
        name = event.info.name
        if name in _BANNER_EVENTS:
            said = name in self.banner_shown
            self.banner_shown.add(name)
            return logging.DEBUG if said else level
        if name in _PER_NODE_EVENTS or _tells_of_an_interruption(event):
            return logging.DEBUG
        return logging.DEBUG if self.verdict_elsewhere and name in _VERDICT_EVENTS else level

    def _say_stopped(self, stop: KeyboardInterrupt) -> None:
        """Once, where dbt logs "Encountered an error" with a stack trace: the step was stopped, not broken."""
        if isinstance(stop, TimeLimitReached):
            return  # the step's failure names the limit and the nodes that were running
        by = signal.Signals(stop.signum).name if isinstance(stop, StopRequested) else "Ctrl-C (SIGINT)"
        self._log(
            logging.WARNING, f"Stopped by {by}: dbt cancelled the queries it was running; the step did not finish."
        )

    def _log(self, level: int, message: str, *, extra: dict[str, bool] | None = None) -> None:
        if self.logger.isEnabledFor(level):
            self.logger.log(level, message, extra=extra)


def progress_line(event: EventMsg) -> str:
    """A node's result as one line: `[12/28] ok     orders  0.12 s` (its index among the step's nodes, dbt's status
    in a word, the node's name, its duration)."""
    data = event.data
    name = event.info.name
    if name == "SkippingDetails":
        return f"[{data.index}/{data.total}] skip   {data.node_info.node_name}"
    total = data.num_models if name == "LogTestResult" else data.total  # dbt's name for a test's total
    word = "no-op" if name == "LogNodeNoOpResult" else _status_word(data.status)
    return f"[{data.index}/{total}] {word:<6} {data.node_info.node_name}  {data.execution_time:.2f} s"


def _status_word(status: str) -> str:
    return _STATUS_WORDS.get(status.lower(), "ok")


def _said_again_at_the_end(event: EventMsg) -> bool:
    """Whether the event details a failure that the command's last message says again."""
    name = event.info.name
    return name in _FAILURE_DETAIL_EVENTS or (name == "EndOfRunSummary" and event.data.num_errors > 0)


def _tells_of_an_interruption(event: EventMsg) -> bool:
    """dbt's "Encountered an error" and stack trace for an interrupt (a signal, a time limit), and its "Exited
    because of keyboard interrupt", which a SIGTERM is not."""
    if event.info.name == "EndOfRunSummary":
        return bool(event.data.keyboard_interrupt)
    return event.info.name in _INTERRUPTION_EVENTS and isinstance(sys.exc_info()[1], KeyboardInterrupt)


@functools.lru_cache(maxsize=8)
def _banner_shown_in(flow_run_id: UUID | None) -> set[str]:
    """The banner lines already said in a flow run, by its earlier steps (each step is a task of the flow run, in
    its process): each line is said by the first step that prints it. A process runs one flow run at a time:
    a few are remembered, not every one."""
    return set()
