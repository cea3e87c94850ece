"""Stopping a run on BigQuery cancels its BigQuery job: real processes, real signals, real dbt-bigquery.

A run stopped mid-query must not leave its job running (and billing) in BigQuery. dbt-bigquery
cancels the jobs of its open connections (``jobs.cancel``) when dbt is interrupted, and the pipeline
turns SIGTERM and a step's time limit into that interruption (``dbt_pipeline/interrupts.py``).

The BigQuery side is the emulator (``tests.emulators``) behind :mod:`tests.emulators.slow_jobs`, a
test double: the emulator finishes every query inside ``jobs.insert``, so it never has a running
job to cancel; the proxy holds the model ``long_running`` (its SQL carries the proxy's marker) as a
job that runs until cancelled, answers the client's polling as BigQuery does, and records each
``jobs.cancel``. Google's token endpoint is the fake of ``tests/test_bigquery.py``, signed into
with a service-account key made for the module, as there.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from prefect.client.schemas.objects import StateType

from tests.conftest import Workspace, copy_example_slice, make_workspace
from tests.emulators import BigQueryEmulator, unique_dataset
from tests.emulators.slow_jobs import HOLD_MARKER, HeldJob, SlowJobsProxy, slow_jobs_proxy
from tests.loopback import TokenEndpoint
from tests.prefect_api import read_flow_run
from tests.test_bigquery import _service_account_key
from tests.test_bigquery import token_endpoint as token_endpoint  # a module-scoped fixture, shared
from tests.test_interrupts import STOP_WITHIN_SECONDS, RunningPipeline, assert_nothing_left

pytestmark = pytest.mark.processes

# `assert_nothing_left` checks the slot of target `dev`: the BigQuery target takes that name here.
TARGET = "dev"
#: A model BigQuery would take long to build: the proxy holds its job until it is cancelled.
LONG_BIGQUERY_MODEL = f"{{{{ config(materialized='table') }}}}\nselect 1 as held {HOLD_MARKER}\n"
#: From the start of `dbt run` to the job's insert is a few seconds (dbt's start, a token, the dataset).
STEP_TIME_LIMIT_SECONDS = 12


class HeldTarget(NamedTuple):
    workspace: Workspace
    proxy: SlowJobsProxy


@pytest.fixture(scope="module")
def held_target(
    tmp_path_factory: pytest.TempPathFactory,
    prefect_api: str,
    prefect_home: Path,
    bigquery_emulator: BigQueryEmulator,
    token_endpoint: TokenEndpoint,
) -> Iterator[HeldTarget]:
    """Target `dev` on BigQuery through the slow-jobs proxy, its blocks created by the setup command;
    the project has the model `long_running`. As `bigquery_run` of tests/test_bigquery.py, without its
    full pipeline run."""
    assert bigquery_emulator.project is not None
    assert bigquery_emulator.endpoint is not None
    root = tmp_path_factory.mktemp("bigquery-interrupts")
    dbt_project = copy_example_slice(root / "dbt")
    (dbt_project / "models" / "marts" / "long_running.sql").write_text(LONG_BIGQUERY_MODEL)
    workspace = make_workspace(root, prefect_api, prefect_home)
    for name in ("BIGQUERY_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS"):
        workspace.env.pop(name, None)
    key = _service_account_key(root, bigquery_emulator.project, token_endpoint.url)
    workspace.env["GOOGLE_APPLICATION_CREDENTIALS"] = str(key.path)
    with slow_jobs_proxy(bigquery_emulator.endpoint) as proxy:
        workspace.write_environments(
            {
                "defaults": {"dbt_project_dir": str(dbt_project)},
                "environments": {
                    TARGET: {
                        "adapter": "bigquery",
                        "project": bigquery_emulator.project,
                        "dataset": unique_dataset("interrupts"),
                        "location": "US",
                        "threads": 4,
                        "api_endpoint": proxy.url,
                    }
                },
            }
        )
        workspace.setup("--blocks-only")
        yield HeldTarget(workspace, proxy)


def wait_for_held_job(run: RunningPipeline, proxy: SlowJobsProxy, known: set[str], timeout: float = 240) -> HeldJob:
    """The job of `long_running` once BigQuery (the proxy) holds it and dbt waits on it."""
    deadline = time.monotonic() + timeout
    while (job := proxy.wait_for_new_job(known, timeout=0.5)) is None or job.polls == 0:
        assert run.process.poll() is None, f"the pipeline ended before its job was held:\n{run.output[-4000:]}"
        assert time.monotonic() < deadline, f"no job of long_running reached BigQuery:\n{run.output[-4000:]}"
    return job


def assert_cancelled_once(proxy: SlowJobsProxy, job: HeldJob) -> HeldJob:
    """dbt cancelled the job, once, and no other job was left running; the job as it ended."""
    (ended,) = [held for held in proxy.held() if held.job_id == job.job_id]
    assert ended.cancelled, f"the job {job.job_id} outlived the run: dbt never cancelled it"
    assert proxy.cancels.count(job.job_id) == 1, proxy.cancels
    assert not [held for held in proxy.held() if not held.cancelled], "a job is still running"
    return ended


def test_sigterm_cancels_the_bigquery_job_and_ends_crashed_naming_the_signal(
    held_target: HeldTarget, prefect_api: str
) -> None:
    """SIGTERM while dbt waits on a BigQuery job: the job is cancelled, the process is out in seconds,
    the run is Crashed naming the signal, and the target is free."""
    workspace, proxy = held_target
    known = {job.job_id for job in proxy.held()}
    run = RunningPipeline(workspace, "--target", TARGET, "--select", "long_running")
    run.wait_for_query()
    job = wait_for_held_job(run, proxy, known)

    signalled = time.monotonic()
    try:
        took = run.stop(signal.SIGTERM)
    except subprocess.TimeoutExpired:  # killed: the job's cancel is the first thing to check
        took = math.inf
    output = run.output
    ended = assert_cancelled_once(proxy, job)
    assert ended.cancelled_at is not None
    print(
        f"\nBigQuery, SIGTERM while the job ran: job cancelled {ended.cancelled_at - signalled:.1f} s and process "
        f"out {took:.1f} s after the signal; {ended.polls} polls of the job"
    )
    assert took < STOP_WITHIN_SECONDS
    assert run.process.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), output[-4000:]
    assert "CANCEL query model.shop_analytics.long_running" in output  # dbt's line for the cancelled node
    assert "DbtRunError" not in output
    flow_run = read_flow_run(prefect_api, output)
    assert flow_run.state_type == StateType.CRASHED, flow_run.state
    assert flow_run.state is not None
    assert "termination signal" in (flow_run.state.message or "")
    assert_nothing_left(workspace, prefect_api)


def test_step_time_limit_cancels_the_bigquery_job_and_fails_naming_the_limit(
    held_target: HeldTarget, prefect_api: str
) -> None:
    """A step past its time limit while dbt waits on a BigQuery job: the job is cancelled, and the run
    fails, not retried, naming the limit and the node."""
    workspace, proxy = held_target
    known = {job.job_id for job in proxy.held()}
    limit = str(STEP_TIME_LIMIT_SECONDS)
    run = RunningPipeline(workspace, "--target", TARGET, "--select", "long_running", "--step-timeout", limit)
    job = wait_for_held_job(run, proxy, known)
    with contextlib.suppress(subprocess.TimeoutExpired):  # killed: the job's cancel is the first thing to check
        run.process.wait(timeout=STEP_TIME_LIMIT_SECONDS + STOP_WITHIN_SECONDS)
    if run.process.poll() is None:
        os.killpg(run.process.pid, signal.SIGKILL)
        run.process.wait()
    exited = time.monotonic()
    output = run.output

    ended = assert_cancelled_once(proxy, job)
    assert ended.cancelled_at is not None
    print(
        f"\nBigQuery, step time limit ({limit} s): the job ran {ended.cancelled_at - job.inserted_at:.1f} s, "
        f"the process was out {exited - ended.cancelled_at:.1f} s after its cancel; {ended.polls} polls of the job"
    )
    assert run.process.returncode == 1, output[-4000:]
    assert "`dbt run --select long_running --target dev` was stopped after its time limit of" in output
    assert "its queries were cancelled" in output
    assert "Running at that moment: model.shop_analytics.long_running" in output
    assert f"The limit reached: step_timeout_seconds = {limit} s" in output
    assert "CANCEL query model.shop_analytics.long_running" in output
    flow_run = read_flow_run(prefect_api, output)
    assert flow_run.state_type == StateType.FAILED, flow_run.state
    assert "Retry" not in output, "a time limit is not a transient failure"
    assert_nothing_left(workspace, prefect_api)
