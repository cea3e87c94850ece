"""A run when its Prefect server restarts, dies with it, dies alone or goes silent: real pipeline processes.

Prefect 3.9 keeps concurrency leases in the server's memory, so a restart loses them while the limit keeps
counting the slot. These tests restart, kill or silence a real `prefect server start` (same port, same
database) around real pipeline runs, and check that the run stops itself in time when it cannot reach its
API, and that the next run always gets the target. How the target's slot is held and taken over, call by
call, is tests/test_target_slot.py's.
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml
from prefect.client.schemas.objects import StateType

from dbt_pipeline.target_slot import read_holder
from prefect_flows.pipeline import API_LOSS_GRACE_SECONDS
from tests.conftest import SHORT_TAKEOVER as TIMINGS
from tests.conftest import Workspace, duckdb_environments, make_workspace, with_short_takeover
from tests.prefect_api import all_task_runs, prefect_client, read_flow_run, step_runs
from tests.prefect_server import PrefectServer
from tests.silent_proxy import SilentProxy
from tests.test_interrupts import LONG_DUCKDB_MODEL, RunningPipeline

# What happens around a run, not what it builds: a slice of the example project (tests/conftest.py).
pytestmark = [pytest.mark.example_slice, pytest.mark.processes]


def model_waiting_for(gate: Path) -> str:
    """A dbt Python model that runs until the file `gate` exists (at most 10 minutes), idle: a run that outlives
    whatever the test does meanwhile (a server restart), then ends by itself when the test opens the gate."""
    return (
        "import time\nfrom pathlib import Path\n\n\n"
        "def model(dbt, session):\n"
        "    dbt.config(materialized='table')\n"
        "    deadline = time.monotonic() + 600\n"
        f"    while not Path({str(gate)!r}).exists() and time.monotonic() < deadline:\n"
        "        time.sleep(0.2)\n"
        "    return session.sql('select 1 as waited')\n"
    )


@pytest.fixture
def own_server(tmp_path: Path, prefect_database: Path) -> Iterator[PrefectServer]:
    """A Prefect server of this test's own, which it may stop and start again."""
    server = PrefectServer(tmp_path / "prefect-home", database=prefect_database)
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture
def slot_workspace(tmp_path: Path, own_server: PrefectServer, dbt_project: Path) -> Workspace:
    (tmp_path / "workspace").mkdir()
    workspace = make_workspace(tmp_path / "workspace", own_server.api, own_server.home)
    workspace.write_environments(
        with_short_takeover(duckdb_environments(dbt_project, workspace.root / "dev.duckdb", "dev"))
    )
    (dbt_project / "models" / "marts" / "outlives_a_restart.py").write_text(model_waiting_for(workspace.root / "gate"))
    (dbt_project / "models" / "marts" / "long_running.sql").write_text(LONG_DUCKDB_MODEL)
    workspace.setup("--blocks-only")
    return workspace


def active_slots(api: str) -> int:
    with prefect_client(api) as client:
        return client.read_global_concurrency_limit_by_name("dbt-target-dev").active_slots


def test_server_restarted_mid_run_the_run_finishes_and_the_next_one_gets_the_target(
    slot_workspace: Workspace, own_server: PrefectServer
) -> None:
    """The holder outlives the restart (its lease is gone, its heartbeat is not); a run started after the
    restart waits for it, then runs; the slot is free at the end."""
    # The default take-over (60 s): the run stops itself after 3/4 of it without the API, and a restart
    # on a busy machine takes longer than the shortest setting's 15 s.
    document = yaml.safe_load(slot_workspace.environments_file.read_text(encoding="utf-8"))
    del document["environments"]["dev"]["takeover_after_seconds"]
    slot_workspace.write_environments(document)
    first = RunningPipeline(slot_workspace, "--select", "outlives_a_restart", "--retries", "0")
    first.wait_for_query(timeout=240)
    own_server.stop()
    own_server.start()
    second = RunningPipeline(slot_workspace, "--select", "raw_stores", "--retries", "0")
    second.wait_for("Waiting for target 'dev': flow run")  # the holder, still running, keeps the target
    (slot_workspace.root / "gate").touch()  # the first run's model ends
    assert first.process.wait(timeout=600) == 0, first.output[-4000:]
    assert second.process.wait(timeout=600) == 0, second.output[-4000:]
    assert "is gone" not in second.output, "a live holder must never be taken over"
    assert read_flow_run(own_server.api, first.output).state_type == StateType.COMPLETED
    # On the target, the runs are their dbt steps: the first run frees it after its last one, then writes its
    # report (seconds on a busy machine) before its flow run ends.
    first_steps = step_runs(all_task_runs(own_server.api, first.output))
    second_steps = step_runs(all_task_runs(own_server.api, second.output))
    first_done = max(step.end_time for step in first_steps if step.end_time)
    assert min(step.start_time for step in second_steps if step.start_time) >= first_done, "the runs overlapped"
    assert active_slots(own_server.api) == 0


def test_run_killed_with_its_server_is_taken_over_and_the_doctor_says_so(
    slot_workspace: Workspace, own_server: PrefectServer
) -> None:
    """SIGKILL of the run and of the server (a machine lost): after the restart the limit still counts the
    slot and no lease expires it. The doctor names the dead holder; the next run takes the target over
    within the environment's takeover_after_seconds and marks the dead run Crashed."""
    dead = RunningPipeline(slot_workspace, "--select", "long_running", "--retries", "0")
    dead.wait_for_query(timeout=240)
    own_server.stop(kill=True)
    dead.process.kill()
    dead.process.wait()
    killed_at = time.monotonic()
    own_server.start()
    assert active_slots(own_server.api) == 1, "the restarted server still counts the dead run's slot"

    time.sleep(max(0.0, TIMINGS.takeover_after + 2 - (time.monotonic() - killed_at)))
    doctor = slot_workspace.doctor("--target", "dev")
    assert doctor.returncode == 1, doctor.stdout
    assert re.search(
        r"\[FAIL\] concurrency limit   dbt-target-dev is held by a run that is gone: .*silent", doctor.stdout
    )
    assert "prefect gcl update dbt-target-dev --active-slots 0" in doctor.stdout

    started = time.monotonic()
    rerun = slot_workspace.pipeline("--select", "raw_stores", "--retries", "0")
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-4000:]
    assert "Target 'dev' was held by a run that is gone" in output
    print(f"\ntake-over after a lost server: rerun finished {time.monotonic() - started:.0f} s after it started")
    dead_run = read_flow_run(own_server.api, dead.output)
    assert dead_run.state_type == StateType.CRASHED, dead_run.state
    assert active_slots(own_server.api) == 0


def test_api_lost_mid_run_stops_the_run_in_bounded_time_and_the_next_run_puts_it_right(
    slot_workspace: Workspace, own_server: PrefectServer
) -> None:
    """The server dies during a long query and stays down: the run stops itself (query cancelled, private
    profile removed, exit non-zero) within the API-loss bound, naming the cause, and exits once that clean-up
    is done rather than let Prefect try to report to the dead server until the grace runs out. When the
    server is back, the next run gets the target and marks the lost run Crashed; the warehouse is intact."""
    lost = RunningPipeline(slot_workspace, "--select", "long_running", "--retries", "0")
    lost.wait_for_query(timeout=240)
    own_server.stop(kill=True)
    killed = time.monotonic()
    returncode = lost.process.wait(timeout=TIMINGS.api_lost_after + TIMINGS.heartbeat + API_LOSS_GRACE_SECONDS + 60)
    took = time.monotonic() - killed
    print(f"\nAPI lost mid-run: the run exited {took:.0f} s after the server died")  # shown with -s / -rA
    assert returncode != 0
    assert f"Stopping the run: the Prefect API at {own_server.api} has not answered for" in lost.output
    assert API_LOST_LAST_WORDS in lost.output, lost.output[-3000:]
    assert not list((slot_workspace.root / "tmp").glob("**/profiles.yml")), "a private profile was left behind"
    with duckdb.connect(str(slot_workspace.root / "dev.duckdb")) as warehouse:  # no lock left: writable
        assert warehouse.execute("select count(*) from information_schema.tables").fetchone() is not None

    own_server.start()
    rerun = slot_workspace.pipeline("--select", "raw_stores", "--retries", "0")
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-4000:]
    assert read_flow_run(own_server.api, lost.output).state_type == StateType.CRASHED
    assert active_slots(own_server.api) == 0


# The run's last words once it has stopped itself and cleaned up (not at the end of the grace, killed).
API_LOST_LAST_WORDS = "pipeline-dbt-complet stopped: the Prefect API is out of reach (see above)."
# From an API gone silent to the run's exit, at most: the run stops api_lost_after from the start of its last
# beat that got through, which is before the silence; then it has its grace to exit.
SILENT_API_EXIT_BOUND = TIMINGS.api_lost_after + API_LOSS_GRACE_SECONDS
SLOW_MACHINE_MARGIN = 20


def test_api_silent_mid_run_stops_the_run_before_its_target_can_be_taken_and_the_next_run_gets_it(
    workspace: Workspace, dbt_project: Path, prefect_api: str
) -> None:
    """The API still accepts connections but never answers (a hung server, a black-holing proxy) during a long
    query: every heartbeat call times out, and the run stops itself (query cancelled, private profile removed,
    the lost API named, exit non-zero) before its target may be taken over, takeover_after_seconds after
    its last heartbeat. Once the API answers again, the next run gets the target (the server freed the slot
    when the lost run's lease expired), marks the lost run Crashed and finishes."""
    (dbt_project / "models" / "marts" / "long_running.sql").write_text(LONG_DUCKDB_MODEL)
    workspace.write_environments(
        with_short_takeover(duckdb_environments(dbt_project, workspace.root / "warehouse" / "dev.duckdb", "dev"))
    )
    with SilentProxy(urllib.parse.urlsplit(prefect_api).port or 0) as proxy:
        workspace.env["PREFECT_API_URL"] = proxy.api
        workspace.setup("--blocks-only")
        lost = RunningPipeline(workspace, "--select", "long_running", "--retries", "0")
        try:
            lost.wait_for_query(timeout=240)
            proxy.go_silent()
            silenced = time.monotonic()
            with prefect_client(prefect_api) as client:  # the server itself: what the other runs see
                last_beat = read_holder(client, "dev")
            assert last_beat is not None, "the run should have recorded itself as the target's holder"
            taken_over_from = last_beat.heartbeat_at + timedelta(seconds=TIMINGS.takeover_after)

            stopped: tuple[datetime, float] | None = None  # when the run said it stops (wall clock, monotonic)
            while lost.process.poll() is None:
                if stopped is None and "Stopping the run:" in lost.output:
                    stopped = datetime.now(UTC), time.monotonic()
                waited = time.monotonic() - silenced
                assert waited < SILENT_API_EXIT_BOUND + SLOW_MACHINE_MARGIN, f"still running:\n{lost.output[-4000:]}"
                time.sleep(0.5)
            if stopped is None and "Stopping the run:" in lost.output:  # it stopped, cleaned up and exited since
                stopped = datetime.now(UTC), time.monotonic()  # the last look: no later than now
        finally:
            if lost.process.poll() is None:
                os.killpg(lost.process.pid, signal.SIGKILL)
                lost.process.wait()
        took = time.monotonic() - silenced
        output = lost.output
        assert stopped is not None, output[-4000:]
        print(
            f"\nAPI silent mid-run: the run stopped {stopped[1] - silenced:.0f} s and exited {took:.0f} s after the "
            f"API went silent ({proxy.dropped_bytes} bytes of requests left unanswered); its target could be taken "
            f"over {(taken_over_from - stopped[0]).total_seconds():.0f} s after it stopped"
        )  # shown with -s / -rA
        assert lost.process.returncode != 0, output[-4000:]
        assert proxy.dropped_bytes > 0, "the run never tried the silent API"
        assert stopped[0] < taken_over_from, "the run was still going when its target could be taken over"
        # Named, and told apart from a server that is down (ConnectError): it took the calls and never answered.
        assert f"Stopping the run: the Prefect API at {proxy.api} has not answered for" in output, output[-4000:]
        assert "(last call: ReadTimeout" in output, output[-4000:]
        assert "CANCEL query model.shop_analytics.long_running" in output, output[-4000:]
        assert not list((workspace.root / "tmp").glob("**/profiles.yml")), "a private profile was left behind"
        assert API_LOST_LAST_WORDS in output, output[-3000:]

        proxy.forward()
        rerun = workspace.pipeline("--select", "raw_stores", "--retries", "0")
    rerun_output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, rerun_output[-4000:]
    # The server freed the slot when the lost run's lease expired (or the rerun takes it over, if the server
    # has not got round to it yet): either way the rerun finds the lost run gone and ends it.
    put_right = re.search(
        r"Target 'dev' was (held by a run that is gone|free, but the run that last held it)", rerun_output
    )
    assert put_right, rerun_output[-4000:]
    print(f"next run once the API answers again: {put_right.group(0)}")
    assert read_flow_run(prefect_api, output).state_type == StateType.CRASHED
    assert active_slots(prefect_api) == 0
