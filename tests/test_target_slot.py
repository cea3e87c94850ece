"""How a target's slot is held, renewed and taken over (dbt_pipeline/target_slot.py), against a real Prefect server.

Runs that wait on a dead holder, a holder paused past its take-over, an API that refuses or stops
answering calls: real processes and real servers (a reverse proxy in front of one to make it refuse or
fall silent). What a whole pipeline run does when its server restarts, dies or goes silent is
tests/test_server_faults.py's.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import Popen
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, VariableCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder, StateType
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Crashed, Running

from dbt_pipeline import target_slot
from dbt_pipeline.environments import target_concurrency_limit
from dbt_pipeline.target_slot import (
    Hold,
    Holder,
    SlotTimings,
    _Heartbeat,
    _release,
    claim_variable,
    hold_target,
    read_holder,
    write_holder,
)
from tests.conftest import REPO
from tests.conftest import SHORT_TAKEOVER as TIMINGS
from tests.flaky_api import FlakyApi
from tests.prefect_api import prefect_client
from tests.silent_proxy import SilentProxy

pytestmark = pytest.mark.processes

WAITER = """
import logging, os, sys, time
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID
from dbt_pipeline import target_slot
from dbt_pipeline.target_slot import SlotTimings, hold_target

logging.basicConfig(level=logging.INFO, format="%(message)s")
logging.getLogger("httpx").setLevel(logging.WARNING)
target, flow_run_id, go, hold_for, clock_offset = sys.argv[1:6]

class MachineClock(datetime):  # this machine's wall clock, `clock_offset` s off the others'
    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + timedelta(seconds=float(clock_offset))

target_slot.datetime = MachineClock

def stop(reason):
    print("stopping:", reason, flush=True)
    os._exit(3)

while not Path(go).exists():
    time.sleep(0.01)
with hold_target(target, UUID(flow_run_id), logging.getLogger("slot"), stop, SlotTimings(takeover_after=20)):
    print("held", time.time(), flush=True)
    time.sleep(float(hold_for))
    print("freed", time.time(), flush=True)
"""


def start_waiter(
    api: str, home: Path, target: str, flow_run_id: UUID, go: Path, hold_for: float = 1.0, clock_offset: float = 0
) -> Popen[str]:
    """A process that waits for `go` to exist, then holds `target` as flow run `flow_run_id` for `hold_for` s.

    With `clock_offset`, as on a machine whose wall clock is that many seconds off (ahead if positive): what
    the slot's code reads of the time of day is shifted (libfaketime, which would shift the whole process,
    breaks Python's sleep here)."""
    env = os.environ | {"PREFECT_API_URL": api, "PREFECT_HOME": str(home)}
    command = [sys.executable, "-c", WAITER, target, str(flow_run_id), str(go), str(hold_for), str(clock_offset)]
    return Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def held_span(output: str) -> tuple[float, float]:
    """When a waiter's output says it got the target and when it let it go."""
    held = re.search(r"^held (\S+)$", output, re.MULTILINE)
    freed = re.search(r"^freed (\S+)$", output, re.MULTILINE)
    assert held, output
    assert freed, output
    return float(held.group(1)), float(freed.group(1))


@flow(name="slot-holder")
def slot_holder() -> None:
    """Only its flow runs are used: the runs that hold or wait for the test's target."""


def take_slot(client: SyncPrefectClient, limit: str, flow_run_id: UUID) -> UUID:
    """Count `limit`'s slot for `flow_run_id`, as a run does when it gets its target; its lease."""
    taken = client.increment_concurrency_slots_with_lease(
        names=[limit], slots=1, mode="concurrency", lease_duration=600,
        holder=ConcurrencyLeaseHolder(type="flow_run", id=flow_run_id),
    )  # fmt: skip
    return UUID(taken.json()["lease_id"])


@pytest.mark.parametrize("claim_left_behind", [False, True], ids=["first-claim", "after-a-claimant-died"])
def test_runs_waiting_on_a_dead_holder_take_its_slot_over_one_at_a_time(
    prefect_api: str, prefect_home: Path, tmp_path: Path, claim_left_behind: bool
) -> None:
    """Five runs find the target held by a run that is gone (still shown Running, its lease still on the server)
    and all try to take it over at once: exactly one does, and each then holds the target alone. The dead run is
    marked Crashed, and its lease ended: the server will not free the slot under a later holder when it expires.
    A claim left by a run that died before taking over does not block the take-over; no claim is left after it."""
    target = f"race-{uuid4().hex[:8]}"
    limit = target_concurrency_limit(target)
    with prefect_client(prefect_api) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit, limit=1))
        dead, *waiters = (client.create_flow_run(slot_holder, state=Running()).id for _ in range(6))
        dead_lease = take_slot(client, limit, dead)
        dead_holder = Holder(dead, datetime.now(UTC) - timedelta(hours=1), dead_lease)
        write_holder(client, target, dead_holder)
        if claim_left_behind:
            died_claiming = Holder(uuid4(), datetime.now(UTC) - timedelta(hours=1)).to_value()
            client.create_variable(VariableCreate(name=claim_variable(target, dead_holder, 1), value=died_claiming))

    go = tmp_path / "go"
    processes = [start_waiter(prefect_api, prefect_home, target, waiter, go) for waiter in waiters]
    time.sleep(8)  # every waiter imported and polling for the go file (a cold start on a busy machine)
    go.touch()
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0] * 5, "\n\n".join(outputs)

    spans = sorted(held_span(output) for output in outputs)
    together = "\n\n".join(outputs)
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans)), f"{spans}\n{together}"
    assert sum("Taking its slot" in output for output in outputs) == 1, outputs
    with prefect_client(prefect_api) as client:
        assert client.read_flow_run(dead).state_type == StateType.CRASHED
        assert client.read_global_concurrency_limit_by_name(limit).active_slots == 0
        with pytest.raises(PrefectHTTPStatusError) as renewed:
            client.renew_concurrency_lease(dead_lease, 60)
        assert renewed.value.response.status_code == 410, "the dead run's lease should have been ended"
        assert read_holder(client, target) is None
        left = [variable.name for variable in client.read_variables() if variable.name.startswith(limit)]
        assert left == [], f"the take-over's claim should be gone once its run holds the target: {left}"


def wait_for_holder(api: str, target: str, flow_run_id: UUID, process: Popen[str], timeout: float = 180) -> None:
    """Until the target's record names `flow_run_id` (whose process must not end first)."""
    deadline = time.monotonic() + timeout
    while True:
        with prefect_client(api) as client:
            holder = read_holder(client, target)
        if holder is not None and holder.flow_run_id == flow_run_id:
            return
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"{flow_run_id} never got {target}"
        time.sleep(0.5)


@pytest.mark.parametrize("taker_done", [False, True], ids=["taker-holding", "taker-done"])
def test_a_run_paused_past_the_take_over_stops_once_it_finds_its_target_taken(
    prefect_api: str, prefect_home: Path, tmp_path: Path, taker_done: bool
) -> None:
    """A holder frozen (SIGSTOP: a laptop asleep, a starved container) for longer than the take-over delay is
    taken over by a waiting run; when it wakes up, its next heartbeat finds the record naming the new holder, or
    no record at all once the taker has finished, and it stops (exit non-zero) instead of writing itself back and
    running beside the next run, its slot no longer counted."""
    target = f"paused-{uuid4().hex[:8]}"
    limit = target_concurrency_limit(target)
    with prefect_client(prefect_api) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit, limit=1))
        paused_run, waiting_run = (client.create_flow_run(slot_holder, state=Running()).id for _ in range(2))
    go = tmp_path / "go"
    go.touch()
    paused = start_waiter(prefect_api, prefect_home, target, paused_run, go, hold_for=120)
    waiting: Popen[str] | None = None
    try:
        wait_for_holder(prefect_api, target, paused_run, paused)
        paused.send_signal(signal.SIGSTOP)
        waiting = start_waiter(prefect_api, prefect_home, target, waiting_run, go, hold_for=1 if taker_done else 15)
        wait_for_holder(prefect_api, target, waiting_run, waiting)  # after the take-over delay
        if taker_done:
            waiting.wait(timeout=60)
        paused.send_signal(signal.SIGCONT)
        paused_output = paused.communicate(timeout=60)[0]
        waiting_output = waiting.communicate(timeout=120)[0]
    finally:
        for process in (paused, waiting):
            if process is not None and process.poll() is None:
                process.kill()
    assert paused.returncode == 3, paused_output
    now = "the run that took it over has released it since" if taker_done else f"flow run {waiting_run} holds it"
    assert re.search(rf"stopping: target {target!r} was taken over while this run was silent .*: {now}", paused_output)
    assert "freed" not in paused_output
    assert waiting.returncode == 0, waiting_output
    assert "Taking its slot" in waiting_output
    with prefect_client(prefect_api) as client:
        assert client.read_flow_run(paused_run).state_type == StateType.CRASHED
        if taker_done:
            assert read_holder(client, target) is None, "the paused run wrote itself back as the holder"
            assert client.read_global_concurrency_limit_by_name(limit).active_slots == 0


def test_a_run_paused_past_the_take_over_with_no_run_waiting_goes_on(
    prefect_api: str, prefect_home: Path, tmp_path: Path
) -> None:
    """A holder frozen past the take-over delay (a laptop asleep) while no other run wants its target wakes up
    to find the target still its own: it records a new heartbeat and finishes its run, instead of taking the
    time it slept for an API that stopped answering."""
    target = f"asleep-{uuid4().hex[:8]}"
    with prefect_client(prefect_api) as client:
        limit = GlobalConcurrencyLimitCreate(name=target_concurrency_limit(target), limit=1)
        client.create_global_concurrency_limit(limit)
        flow_run_id = client.create_flow_run(slot_holder, state=Running()).id
    go = tmp_path / "go"
    go.touch()
    asleep_for = TIMINGS.takeover_after * 1.25
    asleep = start_waiter(prefect_api, prefect_home, target, flow_run_id, go, hold_for=asleep_for + 10)
    try:
        wait_for_holder(prefect_api, target, flow_run_id, asleep)
        asleep.send_signal(signal.SIGSTOP)
        time.sleep(asleep_for)
        woke = datetime.now(UTC)
        asleep.send_signal(signal.SIGCONT)
        with prefect_client(prefect_api) as client:
            while (holder := read_holder(client, target)) is not None and holder.heartbeat_at < woke:
                assert asleep.poll() is None, asleep.communicate()[0]
                time.sleep(0.2)
        output = asleep.communicate(timeout=60)[0]
    finally:
        if asleep.poll() is None:
            asleep.kill()
    assert holder is not None, f"no heartbeat after waking up:\n{output}"
    assert asleep.returncode == 0, output
    assert "freed" in output
    assert "stopping" not in output


def test_a_run_taken_over_and_released_since_leaves_the_next_holders_slot_alone(prefect_api: str) -> None:
    """A run paused past its take-over may end its block before a heartbeat notices: on the way out it finds no
    record and its lease ended (the taker did both). The slot it sees counted is a third run's, which has not
    recorded itself yet: freeing it would let a fourth run in beside the third."""
    target = f"released-{uuid4().hex[:8]}"
    limit = target_concurrency_limit(target)
    with prefect_client(prefect_api) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit, limit=1))
        overtaken, third = (client.create_flow_run(slot_holder, state=Running()).id for _ in range(2))
        lease = take_slot(client, limit, overtaken)
        client.release_concurrency_slots_with_lease(lease)  # the take-over ended the overtaken run's lease
        take_slot(client, limit, third)
    with prefect_client(prefect_api) as client:
        _release(client, target, overtaken, lease, 30.0, logging.getLogger("slot"), SlotTimings())
        assert client.read_global_concurrency_limit_by_name(limit).active_slots == 1, "the third run's slot was freed"


def new_target_with_a_running_flow_run(api: str, prefix: str) -> tuple[str, UUID]:
    """A target of this test's own (its concurrency limit created), and a Running flow run to hold it."""
    target = f"{prefix}-{uuid4().hex[:8]}"
    with prefect_client(api) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=target_concurrency_limit(target), limit=1)
        )
    return target, running_flow_run(api)


def running_flow_run(api: str) -> UUID:
    """A new flow run, Running: the run that holds or waits for a target."""
    with prefect_client(api) as client:
        return client.create_flow_run(slot_holder, state=Running()).id


def test_the_heartbeat_reaches_the_api_the_caller_chose(prefect_api: str) -> None:
    """A caller that points Prefect at its API with `temporary_settings` (not the environment) holds the target
    with heartbeats that reach that API: the heartbeat's thread runs in the caller's context."""
    target, me = new_target_with_a_running_flow_run(prefect_api, "context")
    timings = SlotTimings(takeover_after=20)
    with (
        temporary_settings({PREFECT_API_URL: prefect_api}),
        hold_target(target, me, logging.getLogger("slot"), None, timings),
    ):
        with prefect_client(prefect_api) as client:
            first = read_holder(client, target)
        time.sleep(timings.heartbeat * 1.5)
        with prefect_client(prefect_api) as client:
            later = read_holder(client, target)
    assert first is not None
    assert later is not None
    assert later.heartbeat_at > first.heartbeat_at, "no heartbeat reached the API the caller set"


def test_a_run_whose_take_over_was_overtaken_does_not_take_the_slot_again(
    prefect_api: str, prefect_home: Path, tmp_path: Path
) -> None:
    """A run took a dead holder's slot over (its claim stands, the dead lease is ended), but another run got the
    freed slot first and has not recorded itself yet: the record still names the dead run. The first run must
    not take over again (it would free the newcomer's slot): it waits, and the slot stays counted once.

    (CI caught two runs holding a target together when a run could resume its own claim.)"""
    target = f"overtaken-{uuid4().hex[:8]}"
    limit = target_concurrency_limit(target)
    with prefect_client(prefect_api) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit, limit=1))
        dead, newcomer, taker = (client.create_flow_run(slot_holder, state=Running()).id for _ in range(3))
        client.set_flow_run_state(dead, Crashed(message="taken over"), force=True)
        take_slot(client, limit, newcomer)
        dead_holder = Holder(dead, datetime.now(UTC) - timedelta(hours=1), uuid4())  # its lease already ended
        write_holder(client, target, dead_holder)
        claim = Holder(taker, datetime.now(UTC)).to_value()
        client.create_variable(VariableCreate(name=claim_variable(target, dead_holder, 1), value=claim))

    go = tmp_path / "go"
    go.touch()
    waiting = start_waiter(prefect_api, prefect_home, target, taker, go)
    try:
        time.sleep(12)  # several polls of a 20 s take-over (one every 1.7 s), after a cold start
        assert waiting.poll() is None, waiting.communicate()[0]
        with prefect_client(prefect_api) as client:
            slots = client.read_global_concurrency_limit_by_name(limit).active_slots
            assert slots == 1, "the newcomer's slot was freed"
    finally:
        waiting.kill()
    output = waiting.communicate()[0]
    assert "held" not in output, output
    assert "Taking its slot" not in output, output


def test_a_busy_api_that_refuses_every_other_call_keeps_the_run_going(prefect_api: str) -> None:
    """A server too busy to take every call (503 Service Unavailable to every other request, as Prefect on
    SQLite answers when the database is locked) for twice the API-loss delay: the heartbeat tries each call
    again, keeps recording the run, and the run is not stopped.

    (Seen in a loaded CI run: one attempt per beat, three calls per beat, a run stopped as if cut off.)"""
    target, me = new_target_with_a_running_flow_run(prefect_api, "busy")
    timings = SlotTimings(takeover_after=20)
    lost: list[str] = []
    with (
        FlakyApi(prefect_api, every=2) as flaky,
        temporary_settings({PREFECT_API_URL: flaky.api}),
        hold_target(target, me, logging.getLogger("slot"), lost.append, timings),
    ):
        busy_from = datetime.now(UTC)
        time.sleep(timings.api_lost_after * 2)
        with prefect_client(prefect_api) as client:
            holder = read_holder(client, target)
    assert not lost, lost
    assert flaky.refused > 10, "the proxy refused too few calls to test anything"
    assert holder is not None
    assert holder.flow_run_id == me
    assert datetime.now(UTC) - holder.heartbeat_at < timedelta(seconds=timings.takeover_after), "the record went stale"
    assert holder.heartbeat_at > busy_from


@contextmanager
def behind_a_proxy(api: str) -> Iterator[SilentProxy]:
    """The Prefect API of this thread's calls (and of the heartbeat's, started in the block) behind a proxy that
    can slow its answers down or stop answering (tests/silent_proxy.py)."""
    with SilentProxy(urllib.parse.urlsplit(api).port or 0) as proxy, temporary_settings({PREFECT_API_URL: proxy.api}):
        yield proxy


def test_a_slow_api_that_goes_silent_stops_the_run_counting_from_its_last_recorded_heartbeat(
    prefect_api: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server too busy to answer at once (each beat's three calls take longer than the beat period), then
    silent: the run stops by api_lost_after (3/4 of the take-over delay) after the heartbeat it last recorded,
    which is what the other runs count from, not after that heartbeat's slow answer, nor after the calls that
    were waiting when it went silent. If the suite's load starved the process at that moment (the heartbeat
    says so), it may ask the API once more, and stops before the take-over all the same.

    (Counted from the answer, a run stopped past its take-over in a loaded suite; checked only after a failed
    call, with beats spaced from each one's end, it stopped 18 s after its last heartbeat, in CI.)"""
    target, me = new_target_with_a_running_flow_run(prefect_api, "slow")
    timings = SlotTimings(takeover_after=20)
    lost: list[datetime] = []
    with (
        behind_a_proxy(prefect_api) as proxy,
        hold_target(target, me, logging.getLogger("slot"), lambda reason: lost.append(datetime.now(UTC)), timings),
    ):
        slowed = datetime.now(UTC)
        proxy.slow_down(timings.call_timeout * 0.3)  # each part of each answer (headers, body): 6 s a beat, 5 s apart
        with prefect_client(prefect_api) as client:  # a heartbeat recorded since, then its slow answer on its way
            while (holder := read_holder(client, target)) is None or holder.heartbeat_at < slowed:
                time.sleep(0.2)
        time.sleep(timings.call_timeout)
        proxy.go_silent()
        deadline = time.monotonic() + timings.takeover_after * 2
        while not lost and time.monotonic() < deadline:
            time.sleep(0.2)
        with prefect_client(prefect_api) as client:  # the server itself, as the other runs read it
            last = read_holder(client, target)
        proxy.forward()  # the heartbeat's calls still waiting get their answers
    assert lost, "the run never stopped"
    assert last is not None
    stopped_after = (lost[0] - last.heartbeat_at).total_seconds()
    print(f"\nslow, then silent API: the run stopped {stopped_after:.1f} s after its last heartbeat")  # -s / -rA
    starved = any(looked_late(record) for record in caplog.records)
    bound = timings.takeover_after - timings.poll / 2 if starved else timings.api_lost_after + 1
    assert stopped_after < bound, f"stopped {stopped_after:.1f} s after its last recorded heartbeat"


def test_a_run_that_lost_the_api_leaves_its_slot_to_the_next_run_and_is_out_at_once(prefect_api: str) -> None:
    """Once the heartbeat has stopped the run for a lost API, the way out makes no call to it: freeing the slot
    through an API that never answers held the process for Prefect's minute of request time-out and retries,
    after the run's own clean-up was done. The slot stays counted and the record names the run, for the next
    run to take over."""
    target, me = new_target_with_a_running_flow_run(prefect_api, "gone")
    timings = SlotTimings(takeover_after=20)
    lost: list[str] = []
    with behind_a_proxy(prefect_api) as proxy:
        with hold_target(target, me, logging.getLogger("slot"), lost.append, timings) as hold:
            proxy.go_silent()
            wait_until_lost(lost, within=timings.takeover_after * 2)
            assert lost, "the run never stopped"
            assert hold.api_lost
            leaving = time.monotonic()
        took = time.monotonic() - leaving
        proxy.forward()
    assert took < timings.heartbeat + 1, f"the way out took {took:.0f} s"
    with prefect_client(prefect_api) as client:
        assert client.read_global_concurrency_limit_by_name(target_concurrency_limit(target)).active_slots == 1
        holder = read_holder(client, target)
    assert holder is not None
    assert holder.flow_run_id == me


class PausedCall:
    """Stands in for `dbt_pipeline.target_slot.<name>`: the first call does its work on the server, then the
    calling thread stops before it reads the answer, until `resume` (a process paused in mid-call)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.real = getattr(target_slot, name)
        self.paused, self.resume = threading.Event(), threading.Event()
        monkeypatch.setattr(target_slot, name, self)

    def __call__(self, *args: Any) -> Any:
        answer = self.real(*args)
        if not self.paused.is_set():
            self.paused.set()
            self.resume.wait()
        return answer


def held_by_me(api: str, prefix: str) -> tuple[str, UUID, UUID]:
    """A target of this test's own, held by a new Running flow run as hold_target leaves it: the target, the
    flow run and its lease."""
    target, me = new_target_with_a_running_flow_run(api, prefix)
    with prefect_client(api) as client:
        lease = take_slot(client, target_concurrency_limit(target), me)
        write_holder(client, target, Holder(me, datetime.now(UTC), lease))
    return target, me, lease


def take_over(api: str, target: str, lease: UUID) -> UUID:
    """What a waiting run does to a holder gone silent: end its lease, take the slot, record itself."""
    with prefect_client(api) as client:
        taker = client.create_flow_run(slot_holder, state=Running()).id
        client.release_concurrency_slots_with_lease(lease)
        write_holder(
            client, target, Holder(taker, datetime.now(UTC), take_slot(client, target_concurrency_limit(target), taker))
        )
    return taker


@contextmanager
def beating(api: str, target: str, me: UUID, lease: UUID, lost: list[str]) -> Iterator[_Heartbeat]:
    """The heartbeat of `me` holding `target` with `lease`, as hold_target runs it: its reasons to stop the run
    go to `lost`. Stopped at the end of the block."""
    with temporary_settings({PREFECT_API_URL: api}):  # the heartbeat's threads run in this context
        heartbeat = _Heartbeat(Hold(target), me, lease, logging.getLogger("slot"), lost.append, TIMINGS)
        heartbeat.start()
        try:
            yield heartbeat
        finally:
            heartbeat.stop()


def wait_until_lost(lost: list[Any], within: float) -> None:
    deadline = time.monotonic() + within
    while not lost and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_holder_whose_clock_is_behind_keeps_its_target_while_it_runs(
    prefect_api: str, prefect_home: Path, tmp_path: Path
) -> None:
    """Runs on two machines whose clocks disagree by more than the take-over delay: the holder's is 50 s behind.
    The run that waits must judge the holder's silence on the server's clock, not by the time of day written in
    the holder's record, which would say the holder has been silent for 50 s from its first heartbeat: it waits
    for the target to be freed, and the holder is not stopped. (Before: taken over at once, and the holder
    stopped at its next beat, "taken over while this run was silent".)"""
    target, holder = new_target_with_a_running_flow_run(prefect_api, "behind")
    waiter = running_flow_run(prefect_api)
    go = tmp_path / "go"
    go.touch()
    behind = start_waiter(prefect_api, prefect_home, target, holder, go, TIMINGS.takeover_after, clock_offset=-50)
    try:
        wait_for_holder(prefect_api, target, holder, behind)
        waiting = start_waiter(prefect_api, prefect_home, target, waiter, go)
        outputs = [process.communicate(timeout=180)[0] for process in (behind, waiting)]
    finally:
        behind.kill()
    assert [behind.returncode, waiting.returncode] == [0, 0], "\n\n".join(outputs)
    assert "Taking its slot" not in outputs[1], outputs[1]
    first, second = (held_span(output) for output in outputs)
    assert first[1] <= second[0], f"held together: {first} and {second}\n\n" + "\n\n".join(outputs)


def test_a_dead_holder_whose_clock_was_ahead_is_taken_over_on_time(
    prefect_api: str, prefect_home: Path, tmp_path: Path
) -> None:
    """The holder's clock was an hour ahead of the others' when it was killed: the run waiting for its target
    takes it over once the holder's last heartbeat is the take-over delay old on the server's clock, not an hour
    later (nor when the server expires the dead run's lease, 60 s at least, as it would before)."""
    target, holder = new_target_with_a_running_flow_run(prefect_api, "ahead")
    waiter = running_flow_run(prefect_api)
    go = tmp_path / "go"
    go.touch()
    ahead = start_waiter(prefect_api, prefect_home, target, holder, go, hold_for=600, clock_offset=3600)
    try:
        wait_for_holder(prefect_api, target, holder, ahead)
    finally:
        ahead.kill()
        ahead.wait()
    killed = time.time()
    output = start_waiter(prefect_api, prefect_home, target, waiter, go).communicate(timeout=180)[0]
    assert "Taking its slot" in output, output
    taken_after = held_span(output)[0] - killed
    # Due between 15 and 20 s after the kill (its last heartbeat was at most a beat before it), give or take a
    # poll, the server's Date (which may lag by 2 s) and a busy machine; the lease would have lasted 60 s.
    assert taken_after < TIMINGS.takeover_after * 1.5, f"taken over {taken_after:.0f} s after the kill"


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        (["Tue, 01 Dec 2026 11:00:30 GMT"], 30),
        (["Tue, 01 Dec 2026 10:59:59 GMT"], 0),  # a Date lagging the write (uvicorn refreshes it once a second)
        (["Tue, 01 Dec 2026 11:00:30 -0000"], 30),  # "-0000": no zone said, which Python leaves naive
        (["Tue, 01 Dec 2026 11:00:40 GMT", "Tue, 01 Dec 2026 11:00:30 GMT"], 30),  # a proxy's Date beside the server's
        ([], None),  # no Date header (a proxy that drops it): this process's clock stands in
        (["not a date"], None),
    ],
    ids=["server-clock", "date-lagging", "no-zone", "proxy-date", "no-date", "bad-date"],
)
def test_a_records_age_is_read_on_the_servers_clock(dates: list[str], expected: int | None) -> None:
    written = datetime(2026, 12, 1, 11, 0, 0, tzinfo=UTC)
    age = target_slot._written_ago(written, dates)
    if expected is None:  # on this process's clock
        assert age >= datetime.now(UTC) - written - timedelta(seconds=5)
    else:
        assert age == timedelta(seconds=expected)


def test_a_run_paused_between_reading_and_writing_its_record_does_not_write_itself_back(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A beat read the record (this run's), then the process was paused; meanwhile another run took the target
    over. When the beat goes on, its lease is gone: it must read the record again and stop, not write this run
    back over the run that took the target and go on beside it (which that run's next beat would then stop)."""
    target, me, lease = held_by_me(prefect_api, "mid-beat")
    paused = PausedCall(monkeypatch, "read_holder")
    lost: list[str] = []
    with beating(prefect_api, target, me, lease, lost):
        assert paused.paused.wait(TIMINGS.heartbeat * 2), "no beat"
        taker = take_over(prefect_api, target, lease)
        paused.resume.set()
        wait_until_lost(lost, TIMINGS.heartbeat * 2)
    assert len(lost) == 1, lost
    assert f"target {target!r} was taken over while this run was silent" in lost[0]
    assert lost[0].endswith(f"flow run {taker} holds it")
    with prefect_client(prefect_api) as client:
        holder = read_holder(client, target)
    assert holder is not None
    assert holder.flow_run_id == taker, "the paused run wrote itself back over the run that took the target"


def test_a_beat_under_way_when_the_run_was_paused_does_not_pass_for_a_lost_api(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process was paused past its take-over while a beat's write was under way, and the target was taken
    over meanwhile. On waking, that beat ends with the stamp it took before the pause: the run must stop
    because its target is taken (the next beat finds it), not as if the API had stopped answering.

    The pause outlasts the take-over counted from that stamp, which is what the other runs count from: the
    write reached the server. (A pause past the previous beat's take-over only, as this test once made, may
    wake the watch before this one's, where it rightly stops `poll` before it unless a fresh beat answers.)

    (Seen in a loaded suite run: "the Prefect API ... has not answered for 21 s".)"""
    target, me, lease = held_by_me(prefect_api, "mid-write")
    paused = PausedCall(monkeypatch, "write_holder")
    lost: list[str] = []
    with beating(prefect_api, target, me, lease, lost) as heartbeat:
        assert paused.paused.wait(TIMINGS.heartbeat * 2), "no beat"
        with heartbeat.changed:  # the watch is paused too: it cannot take back the lock it waits with
            taker = take_over(prefect_api, target, lease)
            time.sleep(TIMINGS.takeover_after + TIMINGS.poll * 2)
            paused.resume.set()
        wait_until_lost(lost, TIMINGS.takeover_after)
    assert len(lost) == 1, lost
    assert f"target {target!r} was taken over while this run was silent" in lost[0], lost[0]
    assert lost[0].endswith(f"flow run {taker} holds it")


def test_a_run_paused_before_its_watch_first_looked_does_not_pass_for_a_lost_api(prefect_api: str) -> None:
    """The process was paused (or starved) right after it got its target, before the heartbeat's watch had looked
    at the clock once, and woke past the point where a silent API stops the run, with no run waiting. The watch's
    first look is then late: the run must ask the API (the next beat) and go on, not stop at once as if the API
    had stopped answering while it was not looking.

    Only the watch is held here; the beats go on, and the first one reaches the server before it waits for
    the lock with its stamp. The others count from that stamp, so the pause outlasts the take-over counted from
    it: woken between the two, the watch would rightly stop the run `poll` before it unless a fresh beat answered.

    (Seen in CI: a run paused just after taking its target stopped on waking, "has not answered for 25 s".)"""
    target, me, lease = held_by_me(prefect_api, "first-look")
    lost: list[str] = []
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        heartbeat = _Heartbeat(Hold(target), me, lease, logging.getLogger("slot"), lost.append, TIMINGS)
        with heartbeat.changed:  # the watch cannot take the lock it looks with: its first look waits past its deadline
            heartbeat.start()
            time.sleep(TIMINGS.takeover_after + TIMINGS.heartbeat + TIMINGS.poll * 2)
            woke = datetime.now(UTC)
        try:
            with prefect_client(prefect_api) as client:
                while (holder := read_holder(client, target)) is not None and holder.heartbeat_at < woke:
                    assert not lost, lost
                    time.sleep(0.2)
            wait_until_lost(lost, TIMINGS.heartbeat * 2)
        finally:
            heartbeat.stop()
    assert not lost, lost
    assert holder is not None
    assert holder.flow_run_id == me


def looked_late(record: logging.LogRecord) -> bool:
    """Whether `record` is the heartbeat's warning that its process was paused or starved."""
    return record.levelno == logging.WARNING and str(record.msg).startswith("The heartbeat of target %r looked")


def test_a_starved_run_whose_api_is_lost_still_stops_before_the_take_over(
    prefect_api: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The API stopped answering, and the process was starved when its watch should have looked: it looks late,
    between the point where a silent API stops the run and the take-over. It may ask the API once more (a
    paused process is not a lost API), but must stop before the others may take its target, not wait a whole
    beat's worth of calls past it.

    (Seen in a loaded suite run: a run stopped 25.5 s after its last heartbeat, with a take-over at 20 s.)"""
    target, me, lease = held_by_me(prefect_api, "starved")
    stopped: list[tuple[float, str]] = []
    with behind_a_proxy(prefect_api) as proxy, temporary_settings({PREFECT_API_URL: proxy.api}):
        heartbeat = _Heartbeat(
            Hold(target),
            me,
            lease,
            logging.getLogger("slot"),
            lambda why: stopped.append((time.monotonic(), why)),
            TIMINGS,
        )
        proxy.go_silent()
        with heartbeat.changed:  # the watch cannot take the lock it looks with: its first look is late
            heartbeat.start()
            time.sleep(TIMINGS.api_lost_after + TIMINGS.poll * 1.5)
        try:
            wait_until_lost(stopped, TIMINGS.takeover_after)
        finally:
            heartbeat.stop()
            proxy.forward()
    assert stopped, "the run never stopped"
    (stopped_at, why), *_ = stopped
    stopped_after = stopped_at - heartbeat.last_recorded
    assert stopped_after < TIMINGS.takeover_after, f"stopped {stopped_after:.1f} s after its last heartbeat"
    assert "has not answered" in why, why
    assert any(looked_late(record) for record in caplog.records), "the run's log does not say it was starved"
