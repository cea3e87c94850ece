"""Reading what a flow run left in the Prefect API, as the tests need it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TypeVar

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterName,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.settings import PREFECT_API_URL, temporary_settings

PAGE = 200  # the API refuses a larger limit
T = TypeVar("T")


@contextmanager
def prefect_client(api: str) -> Iterator[SyncPrefectClient]:
    """A Prefect client on the API at `api` (the test server), whatever the process's own settings."""
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        yield client


def flow_run_name(output: str) -> str:
    """The name of the flow run whose log is `output`."""
    match = re.search(r"Beginning flow run '([^']+)' for flow 'pipeline-dbt-complet'", output)
    assert match, output[-2000:]
    return match.group(1)


def read_flow_run(prefect_api: str, output: str) -> FlowRun:
    with prefect_client(prefect_api) as client:
        (run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name(output)]))
        )
    return run


def all_task_runs(prefect_api: str, output: str) -> list[TaskRun]:
    """Every task run of the flow run whose log is `output` (steps and nodes), in start order."""
    flow_run = read_flow_run(prefect_api, output)
    with prefect_client(prefect_api) as client:
        only_this_run = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
        runs = every_page(
            lambda offset: client.read_task_runs(flow_run_filter=only_this_run, limit=PAGE, offset=offset)
        )
    return sorted(runs, key=_started)


def every_page(read_page: Callable[[int], list[T]]) -> list[T]:
    """All the items of a paged API read: `read_page(offset)` returns at most PAGE of them."""
    items: list[T] = []
    while True:
        page = read_page(len(items))
        items += page
        if len(page) < PAGE:
            return items


def _started(run: TaskRun) -> datetime:
    started = run.start_time or run.expected_start_time
    assert started is not None, run
    return started


def step_runs(runs: list[TaskRun]) -> list[TaskRun]:
    """The task runs of the dbt steps (those without a parent task run)."""
    return [run for run in runs if not run.task_inputs.get("__parents__")]


def node_runs(runs: list[TaskRun], step: TaskRun) -> list[TaskRun]:
    """The task runs mirroring the nodes of `step`."""
    return [
        run
        for run in runs
        if any(getattr(parent, "id", None) == step.id for parent in run.task_inputs.get("__parents__", []))
    ]


def node_unique_id(run: TaskRun) -> str:
    """The dbt unique id a node's task run mirrors (its task key is `dbt-<type>-<unique id>`)."""
    return run.task_key.split("-", 2)[2]


def prefect_logs(prefect_api: str, flow_run: FlowRun) -> str:
    """Every log line the flow run and its tasks sent to the Prefect API."""
    with prefect_client(prefect_api) as client:
        only_this_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
        logs = every_page(lambda offset: client.read_logs(log_filter=only_this_run, limit=PAGE, offset=offset))
    return "\n".join(log.message for log in logs)
