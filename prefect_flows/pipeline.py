"""The flow `pipeline-dbt-complet`: run a dbt project for one target under Prefect.

    uv run python prefect_flows/pipeline.py [--target dev] [--mode steps|build] [--select SELECTOR] [--full-refresh]
    uv run python prefect_flows/pipeline.py [--target dev] --retry-failed

The flow loads the block `dbt-cli-profile-{target}` created by `python -m infrastructure.setup_profiles`,
renders it into a private, temporary profiles dir, and runs the dbt steps in order, each a task.
Configuration lives in blocks and in infrastructure/environments.yaml, never in this file.
"""

from __future__ import annotations

if __name__ == "__main__":
    # The command runs this file again as the module `prefect_flows.pipeline`, from the start under
    # `ctrl_c_ends_the_command`: Ctrl-C in its seconds of imports ends it in one line too, not in a traceback.
    import sys

    from dbt_pipeline.interrupts import ctrl_c_ends_the_command
    from dbt_pipeline.prefect_settings import use_repository_prefect_settings

    with ctrl_c_ends_the_command("pipeline-dbt-complet"):  # FLOW_NAME, not imported yet
        use_repository_prefect_settings()  # before Prefect is imported: its settings are read then
        from prefect_flows import pipeline

        status = pipeline.main()
    sys.exit(status)

import argparse
import dataclasses
import functools
import inspect
import itertools
import logging
import shlex
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar, get_args
from uuid import UUID

from prefect import State, flow, get_run_logger
from prefect.exceptions import TerminationSignal
from prefect.logging.handlers import APILogWorker, PrefectConsoleHandler
from prefect.runtime import flow_run
from prefect.states import Failed
from prefect.utilities.annotations import opaque
from pydantic import Field

from dbt_pipeline.blocks import load_profile_data
from dbt_pipeline.dbt_arguments import DbtInvocation
from dbt_pipeline.dbt_invocation import DbtCommandResult, NodeResult, write_manifest
from dbt_pipeline.dbt_project import DbtProject
from dbt_pipeline.environments import AnyEnvironment, load_environments
from dbt_pipeline.errors import (
    ConfigError,
    DbtRunError,
    DiskFullError,
    PipelineError,
    StaleSourcesError,
    StateStoreError,
)
from dbt_pipeline.interrupts import (
    TimeLimits,
    exit_now,
    say_stopped,
    send_then_die,
    signals_end_the_command,
    stop_this_process,
)
from dbt_pipeline.node_status import NodeOutcome, NodeStatus, outcome_of
from dbt_pipeline.prefect_api import require_api
from dbt_pipeline.profiles import exported, private_profiles_dir, profile_outputs, profiles_document
from dbt_pipeline.selection import check_selection, needs_state
from dbt_pipeline.settings import OnStaleSource, RunMode
from dbt_pipeline.target_slot import Hold, Logger, SlotTimings, hold_target
from prefect_flows.alerts import alert_on_cancellation, alert_on_crash, alert_on_failure, summary_on_success
from prefect_flows.dbt_tasks import (
    FRESHNESS_STEP,
    REPEATED_AT_THE_END,
    DbtStep,
    declares_freshness,
    failure_headline,
    plan_steps,
    run_dbt_step,
    source_name,
    stale_sources,
    without_recompiling,
    without_stale_sources,
)
from prefect_flows.last_good_state import (
    NodeReuse,
    explain_reuse,
    fetch_compared_state,
    fetch_previous_run,
    keep_last_good_state,
    selected_by,
)
from prefect_flows.run_record import RunRecord
from prefect_flows.run_report import StepReport, publish_report, run_directory, save_step_artifacts

FLOW_NAME = "pipeline-dbt-complet"
# What --changed-only builds: what changed in code or config and everything downstream of it; and, when
# the compared state has source freshness results, also what reads a source with newer data (the run's
# freshness step against the state's).
MODIFIED = "state:modified+"
CHANGED = f"{MODIFIED} source_status:fresher+"
# After the API is lost: how long the run may take to cancel its queries and clean up before it exits.
API_LOSS_GRACE_SECONDS = 30
# What sending the last log lines may take, once a signal has stopped the run (Prefect's own bound when it flushes).
LAST_LOGS_TIMEOUT_SECONDS = 5
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs, checked before any dbt step starts."""

    target: str
    environment: AnyEnvironment
    project: DbtProject
    outputs: dict[str, Any] = field(repr=False)  # the profile, from the dbt-cli-profile-{target} block
    secrets: dict[str, str] = field(repr=False)  # variables the profile reads with env_var()
    slot_owner: AnyEnvironment  # whose slot the run holds: its own, or Environments.slot_owner's
    compared_with: AnyEnvironment | None = None  # whose last good state dbt's --state reads, if any

    @property
    def target_path(self) -> Path:
        """The target's dbt folder (as `DbtInvocation.target_path`), where its last run is recorded."""
        return self.project.target_path(self.target)


def prepare_run(
    target: str,
    project_dir: str | None,
    select: str | None = None,
    exclude: str | None = None,
    *,
    changed_only: bool = False,
    state_from: str | None = None,
    full_refresh: bool = False,
    mode: RunMode | None = None,
    retry_failed: bool = False,
) -> RunPlan:
    """Check the target and the selection, load the profile block and find the project, or raise a clear error."""
    if retry_failed:
        _check_nothing_chosen_with_retry(
            select=select,
            exclude=exclude,
            changed_only=changed_only,
            state_from=state_from,
            full_refresh=full_refresh,
            mode=mode,
        )
    check_selection("--select", select)
    check_selection("--exclude", exclude)
    environments = load_environments()
    environment = environments.get(target)
    compared_with = environments.get(state_from) if state_from else environment if changed_only else None
    _check_an_earlier_run_is_there(
        environment, compared_with, retry_failed=retry_failed, state_from=state_from, source=environments.source
    )
    if compared_with is None and needs_state(select, exclude):
        raise ConfigError(
            f"The selection {' '.join(filter(None, (select, exclude)))!r} compares with a previous run (dbt's "
            f"state), and none is given: add --changed-only to compare with the last good state of target {target!r}, "
            "or --state-from TARGET to compare with another target's (e.g. prod)."
        )
    profile = load_profile_data(environment.profile_block_name, target=target)
    outputs = profile_outputs(profile["target_configs"])
    environment.check_before_run(outputs, source=environments.source)
    if project_dir:
        project = DbtProject.load(
            Path(project_dir), fix="Point --project-dir at the folder that holds dbt_project.yml."
        )
    else:
        project = DbtProject.load(environment.dbt_project_dir)
    return RunPlan(
        target=target,
        environment=environment,
        project=project,
        outputs=outputs,
        secrets=environment.run_secrets(),
        slot_owner=environments.slot_owner(target),
        compared_with=compared_with,
    )


def _check_nothing_chosen_with_retry(**chosen: str | bool | None) -> None:
    """--retry-failed takes its nodes, mode and selection from the run it resumes: refuse any other choice."""
    flags = [f"--{name.replace('_', '-')}" for name, value in chosen.items() if value]
    if flags:
        raise ConfigError(
            f"--retry-failed cannot be combined with {', '.join(flags)}: it reruns the failed and skipped nodes of "
            "the target's last run, then the steps that run did not get to, with that run's own mode and "
            f"selection. Drop {' and '.join(flags)} to retry, or drop --retry-failed to choose what to run."
        )


def _check_an_earlier_run_is_there(
    environment: AnyEnvironment,
    compared_with: AnyEnvironment | None,
    *,
    retry_failed: bool,
    state_from: str | None,
    source: Path | None,
) -> None:
    """Refuse to compare with, or resume, a run whose warehouse ended with it (DuckDB's `:memory:`): what it
    built is gone, so dbt would select or rerun nodes whose parents are missing."""
    if retry_failed:
        flag, earlier = "--retry-failed", environment
    elif compared_with is not None:
        flag, earlier = ("--state-from" if state_from else "--changed-only"), compared_with
    else:
        return
    why = earlier.built_data_ends_with_the_run()
    if why is None:
        return
    raise ConfigError(
        f"{flag} needs what an earlier run on target {earlier.name!r} built, and it is gone: {why}, which ends "
        f"with the run. Run without {flag}, or point target {earlier.name!r} at a database that stays (in "
        f"{source or 'the environments file'})."
    )


def _failing_once(function: Callable[P, R]) -> Callable[P, R | State[Any]]:
    """The flow's own errors (a `PipelineError`: a failed step, a setting to fix) and a full disk end its run
    Failed, said once.

    Raised out of the flow, Prefect's flow engine would log the error with its traceback ("Encountered
    exception during execution"), and make its whole message the state's, which the engine logs again
    ("Finished in state Failed(...)"). Instead the error is logged once, whole, with the command that reruns
    what failed; the state's message is its first line; its data is the error, so calling the flow raises it.
    """

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R | State[Any]:
        _without_tracebacks_of_our_errors()
        call = inspect.signature(function).bind(*args, **kwargs)
        call.apply_defaults()
        target, project_dir = call.arguments["target"], call.arguments["project_dir"]
        try:
            return function(*args, **kwargs)
        except OSError as error:  # a full disk, wherever the run was writing: one message for every write
            disk_full = DiskFullError.behind(error, target)
            if disk_full is None:
                raise
            failure: PipelineError = disk_full
        except PipelineError as error:
            failure = error
        message = failure_message(failure, target, project_dir)
        # The command's own last message says it again: its console leaves this record out.
        get_run_logger().error("%s", message, extra={REPEATED_AT_THE_END: True})
        return Failed(message=failure_headline(failure), data=failure)

    return run


@flow(
    name=FLOW_NAME,
    on_failure=[alert_on_failure],
    on_crashed=[alert_on_crash],
    on_cancellation=[alert_on_cancellation],
    on_completion=[summary_on_success],
)
@_failing_once
def dbt_full_pipeline(
    target: str = "dev",
    project_dir: str | None = None,
    select: str | None = None,
    exclude: str | None = None,
    full_refresh: bool = False,
    mode: RunMode | None = None,
    changed_only: bool = False,
    state_from: str | None = None,
    retries: Annotated[int, Field(ge=0)] = 2,
    retry_delay_seconds: Annotated[float, Field(ge=0)] = 30,
    run_timeout_seconds: Annotated[float | None, Field(gt=0)] = None,
    step_timeout_seconds: Annotated[float | None, Field(gt=0)] = None,
    retry_failed: bool = False,
) -> list[DbtCommandResult]:
    """Run the dbt steps for `target`: deps, parse, seed, snapshot, run, test (or one build), docs generate.

    Args:
        target: The environment to run, as named in the environments file (dev, prod...).
        project_dir: The dbt project to run; defaults to the environment's `dbt_project_dir`.
        select: A dbt node selection applied to seed, snapshot, run and test.
        exclude: Nodes to leave out of those steps (dbt's --exclude).
        full_refresh: Rebuild incremental models and seeds from scratch.
        mode: `steps` (seed, snapshot, run, then test) or `build` (one dbt build: each node tested as
            soon as it is built, a failure skipping only its descendants); defaults to the environment's.
        changed_only: Build only what changed since the target's last good state (`state:modified+`,
            dbt's --state and --defer); everything when it has none yet.
        state_from: Compare with this target's last good state instead (slim CI against prod): without a
            selection, only what differs from it is built, its unchanged parents read from it (--defer).
        retries: How many times a step is retried after a transient warehouse failure.
        retry_delay_seconds: The wait before each retry.
        run_timeout_seconds: Stop the dbt steps (their queries cancelled) and fail the run past this
            many seconds from the moment the target is free; defaults to the environment's setting.
        step_timeout_seconds: The same for each dbt step; defaults to the environment's setting.
        retry_failed: Rerun what the target's last run left undone, as dbt Cloud's "rerun from failure":
            its failed and skipped nodes (`dbt retry`), then the steps it did not get to, on the nodes it
            selected, in its mode; nothing (and the run completes) when it left nothing undone. Takes no
            select, exclude, full_refresh, mode, changed_only or state_from. Never kept as a last good state.
    """
    logger = get_run_logger()
    plan = prepare_run(
        target,
        project_dir,
        select,
        exclude,
        changed_only=changed_only,
        state_from=state_from,
        full_refresh=full_refresh,
        mode=mode,
        retry_failed=retry_failed,
    )
    mode = mode or plan.environment.mode
    doing = "retrying what its last run left undone" if retry_failed else f"{mode} mode"
    logger.info("Running dbt project %s (%s) on target %r, %s", plan.project.name, plan.project.path, target, doing)

    plan.environment.prepare_run(plan.outputs)
    run_name = flow_run.get_name() or "local"
    artifacts = run_directory(plan.project.path, target, run_name)
    # One run per target at a time (the setup creates the target's 1-slot limit, which the targets that write
    # one DuckDB file share); a second run waits here, and takes the slot over from a run that is gone
    # (dbt_pipeline.target_slot).
    slot = plan.slot_owner
    if slot is plan.environment:
        logger.info("Claiming target %r (one run per target at a time)", target)
    else:
        logger.info(
            "Claiming target %r through the slot of target %r: both write the %s, one run at a time",
            target, slot.name, slot.exclusive_resource(),
        )  # fmt: skip
    timings = SlotTimings(slot.takeover_after_seconds)
    with (
        _holding(slot.name, UUID(flow_run.get_id()), logger, timings),
        exported(plan.secrets),
        private_profiles_dir(profiles_document(plan.project.profile, target, plan.outputs)) as profiles_dir,
        _warehouse_released(plan.environment),
    ):
        limits = TimeLimits.starting_now(
            run_timeout_seconds or plan.environment.run_timeout_seconds,
            step_timeout_seconds or plan.environment.step_timeout_seconds,
        )
        invocation = DbtInvocation(project=plan.project, profiles_dir=profiles_dir, target=target, limits=limits)
        if retry_failed:
            last, steps = _last_run_to_resume(plan)
            if last is None or not steps:
                logger.info("%s", nothing_to_retry(last, target, plan.target_path))
                return []
            logger.info("Resuming run %s (%s mode): %s", last.run, last.mode, _what_is_rerun(steps))
            record, state = last, None  # a retried step keeps the --state it had; the others get it from `last`
        else:
            state = _compared_state(plan, artifacts, needed=needs_state(select, exclude))
            if (changed_only or state_from) and state is not None and not select:  # what changed, and what it feeds
                select = CHANGED if (state / "sources.json").is_file() else MODIFIED
            steps = plan_steps(
                plan.project, mode=mode, select=select, exclude=exclude, full_refresh=full_refresh, state=state
            )
            record = RunRecord(run_name, mode, select, exclude, full_refresh, str(state) if state else None)
        previous = state if plan.compared_with is plan.environment else _previous_run(plan, artifacts)
        record = record.started(run_name, steps)
        record.save(invocation.target_path)
        reports, failure, invocation = _run_steps(
            steps,
            invocation,
            artifacts,
            retries,
            retry_delay_seconds,
            changed=state,
            on_stale_source=plan.environment.on_stale_source,
            record=record,
        )
        compared = state is not None and select in (MODIFIED, CHANGED)  # the selection is the comparison's
        reuse = _explain_reuse(plan, invocation, state, reports, selected=not compared)
        # A complete run that built something is dbt's next --state: the whole project, or all that changed.
        # A --retry-failed run built only what another run left undone: never.
        complete = failure is None and not retry_failed and (not select or compared) and not exclude
        kept = plan.environment.built_data_ends_with_the_run() is None  # else no next run finds what it built
        if complete and kept and (_built(reports) or state is None):
            node_steps = [step.name for step in steps if step.runs_nodes and step.judges_nodes]
            _keep_state(plan, artifacts, invocation.target_path, node_steps, mode)
    publish_report(
        project=plan.project,
        target=target,
        run_name=run_name,
        steps=reports,
        secrets=plan.secrets.values(),
        reuse=reuse,
        previous=previous,
    )
    logger.info("Run report saved in %s", artifacts)
    if failure is not None:
        raise failure
    # Without the parse step's manifest: Prefect walks a flow's return value (looking for futures), and a
    # manifest is a graph of thousands of objects (1 s on 1,000 nodes).
    return [dataclasses.replace(report.result, manifest=None) for report in reports if report.result is not None]


def _last_run_to_resume(plan: RunPlan) -> tuple[RunRecord | None, list[DbtStep]]:
    """The target's last run, and the steps that resume it (none: it left nothing undone)."""
    last = RunRecord.load(plan.target_path)
    return last, last.retry_steps(plan.project) if last is not None else []


def _what_is_rerun(steps: Sequence[DbtStep]) -> str:
    """The node steps of a resuming run, in words: `run: its failed and skipped nodes (dbt retry), then test`."""
    said = [
        f"{step.name}: its failed and skipped nodes (dbt retry)" if step.retry_of is not None else step.name
        for step in steps
        if step.is_node_step
    ]
    return ", then ".join(said)


def nothing_to_retry(last: RunRecord | None, target: str, target_path: Path) -> str:
    """What `--retry-failed` says when the target's last run left nothing undone, or no run is recorded."""
    if last is None:
        return (
            f"nothing to retry on target {target!r}: no run of it is recorded in {target_path}. "
            "Run it without --retry-failed."
        )
    return f"nothing to retry on target {target!r}: its last run, {last.run}, left no failed or skipped node to rerun."


def failure_message(error: PipelineError, target: str, project_dir: str | None) -> str:
    """The error and, when a dbt step failed (the run recorded what it left undone), the command that reruns it."""
    if not isinstance(error, DbtRunError):
        return str(error)
    return f"{error}\nRerun only what failed: {rerun_command(target, project_dir)}"


def rerun_command(target: str, project_dir: str | None) -> str:
    """The command that reruns only what the target's last run left undone (`--retry-failed`)."""
    words = ["uv", "run", "python", "prefect_flows/pipeline.py", "--target", target]
    if project_dir:
        words += ["--project-dir", project_dir]
    return shlex.join([*words, "--retry-failed"])


def _run_steps(
    steps: list[DbtStep],
    invocation: DbtInvocation,
    artifacts: Path,
    retries: int,
    retry_delay_seconds: float,
    *,
    changed: Path | None,
    on_stale_source: OnStaleSource,
    record: RunRecord,
) -> tuple[list[StepReport], BaseException | None, DbtInvocation]:
    """Run the steps in order, each a task; after a failure the rest are listed as not run.

    The source freshness step runs only when the project declares freshness; what a stale source
    does to the steps after it is the environment's `on_stale_source`. With a compared state
    (`changed`), docs are not generated again when no node was built: nothing changed in the warehouse.
    After each node step, the run's `record` says what the run has left undone (for `--retry-failed`).

    The steps run with dbt's `--no-write-json`: each writes its results, and the run writes manifest.json
    once, after docs generate (whose site serves it) or when the steps end, unless a dbt command that
    parses or compiles for itself (`retry`, docs generate compiling) wrote it.

    Returns the steps' reports, the failure if any, and the invocation as the last step had it (with
    the parse step's manifest, compiled by the steps).
    """
    reports: list[StepReport] = []
    failure: BaseException | None = None
    stale: list[NodeResult] = []
    nothing_changed: bool | None = None  # known before the first node step of a compared run
    manifest_written = False
    for step in steps:
        if step is FRESHNESS_STEP and not declares_freshness(invocation.manifest):
            continue
        if failure is not None:
            reports.append(StepReport(step.name, None, step.judges_nodes))  # the report lists the steps not run
            continue
        to_run = without_recompiling(without_stale_sources(step, stale), invocation.manifest)
        if changed is not None and step.is_node_step and nothing_changed is None:
            nothing_changed = _selects_nothing(to_run, invocation, changed)
            if nothing_changed:
                get_run_logger().info("Nothing to build: the selection compared with the last good state picks no node")
        needless = nothing_changed and step.is_node_step
        if needless or (changed is not None and step.name == "docs-generate" and not _built(reports)):
            reports.append(StepReport(step.name, None, step.judges_nodes, needless=True))
            if step.is_node_step:
                record = record.done(step)
                record.save(invocation.target_path)
            continue
        step_task = run_dbt_step.with_options(
            name=f"dbt-{step.name}", retries=retries, retry_delay_seconds=retry_delay_seconds
        )
        # opaque: Prefect resolves a task's arguments by walking them, and a manifest is a large graph.
        outcome = step_task(to_run, opaque(invocation), return_state=True).result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            failure = outcome
        result = outcome if isinstance(outcome, DbtCommandResult) else getattr(outcome, "result", None)
        if result is not None and result.manifest is not None:  # the parse step: later steps reuse it
            invocation = dataclasses.replace(invocation, manifest=result.manifest)
        reports.append(StepReport(step.name, result, step.judges_nodes))
        manifest_written = manifest_written or _writes_its_manifest(to_run, result)
        if step.name == "docs-generate" and not manifest_written:  # the docs site serves it
            manifest_written = _write_manifest(invocation)
        save_step_artifacts(artifacts, step.name, invocation.target_path, runs_nodes=step.runs_nodes)
        after = (
            record.after(step, result, artifacts / f"{step.name}.run_results.json") if result is not None else record
        )
        if after != record:
            record = after
            record.save(invocation.target_path)
        if step is FRESHNESS_STEP and result is not None:
            found = _judge_freshness(result, on_stale_source, invocation.target)
            if found and on_stale_source == "fail":
                failure = StaleSourcesError(_stale_message(found, invocation.target), result)
            stale = found if on_stale_source == "skip" else []
    if not manifest_written:
        _write_manifest(invocation)
    return reports, failure, invocation


def _write_manifest(invocation: DbtInvocation) -> bool:
    """Write the run's manifest.json (the parse step's, as the steps compiled it); whether there was one."""
    if invocation.manifest is None:
        return False
    write_manifest(invocation.manifest, invocation.target_path)
    return True


def _writes_its_manifest(step: DbtStep, result: DbtCommandResult | None) -> bool:
    """Whether `step`, which ended with `result`, wrote manifest.json itself: `dbt retry` parses the project
    again and writes what it read, docs generate writes what it compiled (both whatever `--no-write-json` says)."""
    if result is None or not result.success:
        return False
    return step.command[0] == "retry" or (step.name == "docs-generate" and "--no-compile" not in step.command)


def _selects_nothing(step: DbtStep, invocation: DbtInvocation, state: Path) -> bool:
    """Whether the comparison with `state` (the selection `--changed-only` and `--state-from` make) picks no
    node: then the node steps are not run at all, where dbt would start each one to say "Nothing to do". A
    selection of the user's own is left to dbt, whose warning names a criterion that matches nothing."""
    select, exclude = _option(step.command, "--select"), _option(step.command, "--exclude")
    if select not in (MODIFIED, CHANGED) or invocation.manifest is None:
        return False
    every_type = sorted({node.resource_type for node in invocation.manifest.nodes.values()})
    return selected_by(invocation, state, select, exclude, resource_types=every_type) == set()


def _option(command: Sequence[str], name: str) -> str | None:
    """The value given to `name` in a dbt command's arguments, if any."""
    return next((value for option, value in itertools.pairwise(command) if option == name), None)


def _built(reports: Sequence[StepReport]) -> list[NodeResult]:
    """The nodes the run's steps ran (seeds, snapshots, models, tests), not the sources freshness checked."""
    return [
        node
        for report in reports
        if report.result is not None and report.name != FRESHNESS_STEP.name
        for node in report.result.nodes
    ]


def _judge_freshness(result: DbtCommandResult, on_stale_source: OnStaleSource, target: str) -> list[NodeResult]:
    """Say what the freshness step found; return the stale sources (past their error_after)."""
    logger = get_run_logger()
    for node in result.nodes:
        if node.status == NodeStatus.Warn:
            logger.warning("Source %s is past its warn_after: %s", node.name, node.message or "")
    unchecked = [node for node in result.nodes if node.status == NodeStatus.RuntimeErr]
    if unchecked:  # a table not loaded yet, most often (a first run on an empty warehouse)
        logger.warning(
            "The freshness of %d source(s) could not be checked (%s: %s)",
            len(unchecked),
            ", ".join(node.name for node in unchecked),
            " ".join((unchecked[0].message or "").split())[:300],
        )
    stale = stale_sources(result)
    if stale and on_stale_source == "skip":
        logger.warning(
            "%s Left out, with every node built on them (on_stale_source: skip).", _stale_message(stale, target)
        )
    elif stale and on_stale_source == "warn":
        logger.warning("%s Building anyway (on_stale_source: warn).", _stale_message(stale, target))
    return stale


def _stale_message(stale: Sequence[NodeResult], target: str) -> str:
    names = ", ".join(source_name(node) for node in stale)
    return (
        f"{len(stale)} source(s) past their freshness error_after on target {target!r}: {names}. Load fresh "
        "data, or change `on_stale_source` (warn, skip, fail) for this target in the environments file."
    )


def _explain_reuse(
    plan: RunPlan, invocation: DbtInvocation, state: Path | None, reports: list[StepReport], *, selected: bool
) -> list[NodeReuse]:
    """With a compared state and the run's manifest: which nodes the run built and which it reused, and why."""
    if state is None or plan.compared_with is None or invocation.manifest is None:
        return []
    built = {node.unique_id for node in _built(reports) if outcome_of(node.status) is NodeOutcome.PASSED}
    # Node steps left out as needless: the comparison selected nothing (docs can be needless on their own).
    nothing_changed = any(report.needless and report.name != "docs-generate" for report in reports)
    compared_with = plan.compared_with.name
    return explain_reuse(
        invocation, state, built, compared_with=compared_with, selected=selected, nothing_changed=nothing_changed
    )


def _previous_run(plan: RunPlan, artifacts: Path) -> Path | None:
    """The target's last good state, fetched before this run may replace it: the report compares with it."""
    return fetch_previous_run(plan.environment, plan.outputs, artifacts / "previous_run", get_run_logger())


def _compared_state(plan: RunPlan, artifacts: Path, *, needed: bool) -> Path | None:
    """The last good state the run compares with, fetched into the run's folder; None without one.

    `needed`: the user's selection reads a state, so a missing one fails the run rather than
    silently selecting nothing.
    """
    if plan.compared_with is None:
        return None
    logger = get_run_logger()
    state = fetch_compared_state(
        plan.compared_with, plan.environment, plan.outputs, artifacts / "compared_state", logger
    )
    if state is None and needed:
        raise StateStoreError(
            f"Target {plan.compared_with.name!r} has no last good state yet, and the selection compares with it. "
            f"Run target {plan.compared_with.name!r} once in full (without --select) first."
        )
    return state


def _keep_state(plan: RunPlan, artifacts: Path, target_path: Path, node_steps: list[str], mode: RunMode) -> None:
    """Save the run as its target's last good state; a store that fails is said, the run's work stands."""
    logger = get_run_logger()
    try:
        keep_last_good_state(
            plan.environment,
            plan.outputs,
            run_directory=artifacts,
            target_path=target_path,
            node_steps=node_steps,
            metadata={"flow_run_id": str(flow_run.get_id()), "mode": mode},
            logger=logger,
        )
    except StateStoreError as error:
        logger.warning("%s The run succeeded; its state was not kept.", error)


@contextmanager
def _warehouse_released(environment: AnyEnvironment) -> Iterator[None]:
    """When the steps end, however they end, release the warehouse before the target is freed."""
    try:
        yield
    finally:
        environment.finish_run()


def _at_least_zero(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse type: a number of `kind` that is 0 or more (argparse names the flag on error)."""

    def parse(text: str) -> float:
        value = kind(text)
        if value < 0:
            msg = f"must be 0 or more, got {text}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


@contextmanager
def _holding(target: str, flow_run_id: UUID, logger: Logger, timings: SlotTimings) -> Iterator[None]:
    """The target held for the block (dbt_pipeline.target_slot). If its heartbeat finds the Prefect API lost,
    the run is stopped, and the process ends as soon as the clean-up is done (the block's: queries cancelled,
    private profile removed; then the hold's own): Prefect would spend the rest of the grace trying to report."""
    hold: Hold | None = None
    try:
        with hold_target(target, flow_run_id, logger, _stop_on_api_loss, timings) as hold:
            yield
    finally:
        if hold is not None and hold.api_lost:
            exit_now(f"{FLOW_NAME} stopped: the Prefect API is out of reach (see above).")


def _stop_on_api_loss(reason: str) -> None:
    """The run cannot report, and its target is (about to be) another run's: stop it, its queries cancelled."""
    stop_this_process(
        f"{reason}. dbt's queries are cancelled; the next run on the target marks this one Crashed",
        grace_seconds=API_LOSS_GRACE_SECONDS,
    )


def _more_than_zero(text: str) -> float:
    """An argparse type: a number of seconds, more than 0."""
    value = float(text)
    if not value > 0:  # NaN too
        msg = f"must be more than 0 seconds, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prefect_flows/pipeline.py", description=dbt_full_pipeline.__doc__)
    parser.add_argument("--target", default="dev", help="environment to run (default: dev)")
    parser.add_argument("--project-dir", help="dbt project directory (default: the environment's)")
    parser.add_argument("--select", help="dbt node selection, e.g. 'staging+' or 'tag:daily'")
    parser.add_argument("--exclude", help="dbt node selection to leave out, e.g. 'test_type:unit'")
    parser.add_argument("--full-refresh", action="store_true", help="rebuild incremental models and seeds")
    parser.add_argument(
        "--mode",
        choices=get_args(RunMode),
        help="steps: seed, snapshot, run, then test; build: one dbt build, a failure skipping only its "
        "descendants (default: the environment's, else steps)",
    )
    parser.add_argument(
        "--changed-only",
        action="store_true",
        help="build only what changed since the target's last good state (dbt's state:modified+, --defer)",
    )
    parser.add_argument(
        "--state-from", metavar="TARGET", help="compare with this target's last good state (e.g. prod, for CI)"
    )
    parser.add_argument(
        "--retries", type=_at_least_zero(int), default=2, help="retries after a transient failure (default: 2)"
    )
    parser.add_argument(
        "--retry-delay", type=_at_least_zero(float), default=30, help="seconds between retries (default: 30)"
    )
    parser.add_argument(
        "--run-timeout", type=_more_than_zero, help="seconds the dbt steps may take in all (default: the environment's)"
    )
    parser.add_argument(
        "--step-timeout", type=_more_than_zero, help="seconds one dbt step may take (default: the environment's)"
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="rerun only what the target's last run left undone: its failed and skipped nodes (dbt retry), then "
        "the steps it did not get to, with its own mode and selection (no --select, --exclude, --changed-only, "
        "--state-from, --full-refresh or --mode with it); when it left nothing undone, say so and exit 0",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the flow from the command line; exit 0 on success, 1 with a clear message otherwise."""
    args = _parse_args(argv)
    _console_says_failures_once()
    try:
        with signals_end_the_command(send_then_die(_send_the_last_logs)):
            return _run(args)
    except PipelineError as error:
        print(f"\n{FLOW_NAME} failed: {failure_message(error, args.target, args.project_dir)}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, TerminationSignal) as stop:
        # The query was cancelled and the run recorded as Crashed (or Cancelled) on the way out.
        return say_stopped(FLOW_NAME, stop.signal if isinstance(stop, TerminationSignal) else signal.SIGINT)


def _run(args: argparse.Namespace) -> int:
    """The command's run: checks made before a flow run is created, then the flow."""
    # A typo in the target or the selection, a missing block or an API that cannot be reached is
    # reported before a flow run is created; so is a --retry-failed with nothing to retry.
    require_api()
    plan = prepare_run(
        args.target,
        args.project_dir,
        args.select,
        args.exclude,
        changed_only=args.changed_only,
        state_from=args.state_from,
        full_refresh=args.full_refresh,
        mode=args.mode,
        retry_failed=args.retry_failed,
    )
    if args.retry_failed and not (resumed := _last_run_to_resume(plan))[1]:
        print(f"{FLOW_NAME}: {nothing_to_retry(resumed[0], args.target, plan.target_path)}")
        return 0
    dbt_full_pipeline(
        target=args.target,
        project_dir=args.project_dir,
        select=args.select,
        exclude=args.exclude,
        full_refresh=args.full_refresh,
        mode=args.mode,
        changed_only=args.changed_only,
        state_from=args.state_from,
        retries=args.retries,
        retry_delay_seconds=args.retry_delay,
        run_timeout_seconds=args.run_timeout,
        step_timeout_seconds=args.step_timeout,
        retry_failed=args.retry_failed,
    )
    return 0


def _send_the_last_logs() -> None:
    """The run's last log lines to the Prefect API before a signal ends the process: why it stopped, its final
    state. Bounded: an API that does not take them does not hold the process up for long."""
    APILogWorker.drain_all(timeout=LAST_LOGS_TIMEOUT_SECONDS)


class _SaidAtTheEnd(logging.Filter):
    """Leaves out of the console what the command's last message says again: dbt's details of a failure (each
    failed node and its error) and the flow's error. The run's logs in Prefect keep them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, REPEATED_AT_THE_END, False)


def _console_says_failures_once() -> None:
    """A failure is printed once, by the command's last message (with the command that reruns what failed)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            _add_once(handler, _SaidAtTheEnd)


class _NoTracebackOfOurErrors(logging.Filter):
    """Prefect's engines log a failed run with `exc_info`: the traceback of one of our own errors (whose message
    says what to do) is left out, as is the empty one ("NoneType: None") of a task that returned its Failed state.
    The line itself stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and (record.exc_info[1] is None or isinstance(record.exc_info[1], PipelineError)):
            record.exc_info = None
            record.exc_text = None
        return True


def _without_tracebacks_of_our_errors() -> None:
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        _add_once(logging.getLogger(name), _NoTracebackOfOurErrors)


def _add_once(filterer: logging.Filterer, kind: type[logging.Filter]) -> None:
    """A filter of `kind` on `filterer`, unless it has one: a process may run the flow more than once."""
    if not any(isinstance(installed, kind) for installed in filterer.filters):
        filterer.addFilter(kind())
