"""One run per target at a time, and no target left locked by a run that is gone.

The slot is the one slot of the global concurrency limit `dbt-target-{target}` (created by the
setup), taken with a lease as Prefect intends. But Prefect 3.9 keeps leases in the server's memory:
after the server restarts, or after Ctrl-C in the default mode (which also stops the temporary
server), the limit still counts the slot and no lease is left to expire it, and every later run
would wait forever. So the run that holds the slot also records itself, with a heartbeat, in the
Prefect Variable `dbt-target-{target}-holder`, which lives in the server's database like the limit.

A run that finds the target taken reads that record. The holder is gone when its flow run has
ended, when its heartbeat is older than the environment's `takeover_after_seconds`, or when no run
has claimed the slot for that long (a lease the server lost). A heartbeat's age is read on the server's
clock (when the server last wrote the record, against the time of its answer), never on the runs' own:
when two machines' clocks disagree by more than the take-over delay, a holder whose clock is behind
would look silent while it runs, and one whose clock is ahead would look alive after it died.

The waiting run then takes the slot over: it ends the dead holder's lease if the server still has it
(otherwise the server would expire it later and free the slot under the next holder), else resets the
slot, and marks a holder that Prefect still shows as running Crashed. Of several waiting runs that
find the same dead holder only one may take over; Prefect's API has no compare-and-set, but a
Variable's name is unique, so the claim is the creation of a Variable named after the dead holder:
one creation succeeds, the others get 409.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from uuid import UUID

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate, VariableCreate, VariableUpdate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder, Variable
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from prefect.states import Crashed

from dbt_pipeline.environments import target_concurrency_limit

Logger = logging.Logger | logging.LoggerAdapter[Any]

WAITING_REPORT_EVERY_SECONDS = 60.0
PREFECT_MIN_LEASE_SECONDS = 60.0  # the server refuses a shorter lease_duration (422)
RECORD_SETTLE_SECONDS = 1.0
_LOCKED = 423
_LEASE_GONE = 410
_CALLS_PER_BEAT = 4  # read the holder, renew the lease, (if it just ended) read again, write: _Heartbeat._beat
_TRY_AGAIN_STATUSES = frozenset({429, 502, 503, 504})  # as Prefect's own client retries (and a gateway's time-out)
_FIRST_RETRY_PAUSE = 0.5
_T = TypeVar("_T")


@dataclass(frozen=True)
class SlotTimings:
    """How a run keeps its target, all derived from one setting: how long a silent holder keeps it.

    The derived values keep the same proportions whatever `takeover_after` is, because the guarantee
    rests on them: a holder cut off from the API stops its run before the others may take its target
    over. It stops `api_lost_after` (3/4) after the last heartbeat it recorded (stamped when sent, the
    time the others read), by a clock that no call can hold up: slow or hanging calls change nothing.
    The quarter left is the run's time to stop before the others may take over. A process paused or
    starved at that moment (its watch looks late) goes on if a fresh heartbeat is recorded, and else
    still stops `poll` before the take-over; only one paused past the take-over (a laptop asleep) waits
    for a whole beat, whose answer says whether its target was taken.
    """

    takeover_after: float = 60.0

    @property
    def heartbeat(self) -> float:
        """Seconds between two heartbeats of the holder."""
        return self.takeover_after / 4

    @property
    def api_lost_after(self) -> float:
        """A holder whose heartbeat has not reached the API for this long stops its run."""
        return self.takeover_after * 3 / 4

    @property
    def call_timeout(self) -> float:
        """What one heartbeat call may take before the next beat tries again (an API that accepts
        connections but never answers must not hold the heartbeat up for ever)."""
        return self.takeover_after / 6

    @property
    def lease(self) -> float:
        """The Prefect lease on the slot, renewed by each heartbeat: Prefect takes 60 s at least. It only
        frees the slot of a run that is gone sooner when the server notices first; the take-over does not
        wait for it."""
        return max(self.takeover_after, PREFECT_MIN_LEASE_SECONDS)

    @property
    def poll(self) -> float:
        """Seconds between two looks of a waiting run at the slot."""
        return self.takeover_after / 12


def holder_variable(target: str) -> str:
    """The Prefect Variable naming the run that holds `target`."""
    return f"{target_concurrency_limit(target)}-holder"


def claim_variable(target: str, gone: Holder | None, attempt: int) -> str:
    """The Prefect Variable whose creation claims the take-over of `target` from `gone` (None: a slot no
    run has claimed). Numbered, so that a claim whose run died before taking over does not block forever."""
    subject = gone.flow_run_id if gone is not None else "unclaimed"
    return f"{target_concurrency_limit(target)}-takeover-{subject}-{attempt}"


@dataclass(frozen=True)
class Holder:
    """The run that holds (or claims) a target's slot, when it last said it was alive, and its lease."""

    flow_run_id: UUID
    heartbeat_at: datetime  # on the holder's clock: for people to read, never to judge its silence by
    lease_id: UUID | None = None
    # How long before it was read the server wrote this record, on the server's clock (zero for a record
    # not read from the server): a holder's silence.
    recorded_ago: timedelta = field(default=timedelta(0), compare=False)

    def to_value(self) -> dict[str, str]:
        value = {"flow_run_id": str(self.flow_run_id), "heartbeat_at": self.heartbeat_at.isoformat()}
        return value | ({"lease_id": str(self.lease_id)} if self.lease_id else {})

    @classmethod
    def from_value(cls, value: Any, recorded_ago: timedelta = timedelta(0)) -> Holder | None:
        try:
            lease_id = UUID(value["lease_id"]) if value.get("lease_id") else None
            heartbeat_at = datetime.fromisoformat(value["heartbeat_at"])
            return cls(UUID(value["flow_run_id"]), heartbeat_at, lease_id, recorded_ago)
        except (TypeError, KeyError, ValueError, AttributeError):
            return None  # not written by us: as if there were no record


def read_holder(client: SyncPrefectClient, target: str) -> Holder | None:
    record = _read_record(client, holder_variable(target))
    return Holder.from_value(*record) if record is not None else None


def _read_record(client: SyncPrefectClient, name: str) -> tuple[Any, timedelta] | None:
    """The value of the Variable `name` and how long ago the server last wrote it, on the server's clock
    (its `updated`, against the `Date` of its answer), or None if there is no such Variable."""
    try:
        response = client.request("GET", "/variables/name/{name}", path_params={"name": name})
    except httpx.HTTPStatusError as error:
        if error.response.status_code == 404:
            return None
        raise
    variable = Variable.model_validate(response.json())
    return variable.value, _written_ago(variable.updated, response.headers.get_list("date"))


def _written_ago(updated: datetime | None, dates: list[str]) -> timedelta:
    """`updated`'s age when the server answered, by the `Date` of its answer. That header is in whole seconds
    and uvicorn refreshes it once a second: the age may come out up to 2 s short, which only delays a
    take-over. A proxy may add a `Date` of its own: the earliest counts (the shorter age). Without a usable
    one, this process's clock stands in for the server's."""
    if updated is None:
        return timedelta(0)
    answered = min(filter(None, map(_http_date, dates)), default=datetime.now(UTC))
    return max(answered - updated, timedelta(0))


def _http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)  # an HTTP date is in GMT, whatever it says


def write_holder(client: SyncPrefectClient, target: str, holder: Holder) -> None:
    """Record `holder`: one call on every heartbeat, a second only the first time."""
    name = holder_variable(target)
    try:
        client.update_variable(VariableUpdate(name=name, value=holder.to_value()))
    except PrefectHTTPStatusError as error:
        if error.response.status_code != 404:
            raise
        try:
            client.create_variable(VariableCreate(name=name, value=holder.to_value()))
        except ObjectAlreadyExists:  # created in between (a holder's heartbeat racing its release): write it again
            client.update_variable(VariableUpdate(name=name, value=holder.to_value()))


def why_holder_is_gone(
    client: SyncPrefectClient, holder: Holder | None, *, unclaimed_since: datetime, timings: SlotTimings
) -> str | None:
    """Why the slot's holder is gone (so its slot can be taken), or None while it may be alive.

    With no holder recorded, `unclaimed_since` is when the slot was first seen taken with no record: a run
    that has just got the slot records itself a moment later, so only a long silence counts."""
    silent_after = timedelta(seconds=timings.takeover_after)
    if holder is None:
        if datetime.now(UTC) - unclaimed_since >= silent_after:
            return f"no run has claimed it for {silent_after.total_seconds():.0f} s (the server lost its lease)"
        return None
    try:
        flow_run = client.read_flow_run(holder.flow_run_id)
    except ObjectNotFound:
        return f"its flow run {holder.flow_run_id} no longer exists"
    if flow_run.state is not None and flow_run.state.is_final():
        return f"its flow run {flow_run.name!r} ended ({flow_run.state.name}) without freeing it"
    if holder.recorded_ago >= silent_after:
        silence = holder.recorded_ago.total_seconds()
        return f"its flow run {flow_run.name!r} has been silent for {silence:.0f} s (killed or cut off)"
    return None


@dataclass
class Hold:
    """A run's hold on its target, as the block inside `hold_target` sees it."""

    target: str
    # Set once the heartbeat has stopped the run because the API no longer answers (not for a take-over):
    # nothing the run still has to say can reach Prefect, so it need not wait to say it.
    api_lost: bool = False


@contextmanager
def hold_target(
    target: str,
    flow_run_id: UUID,
    logger: Logger,
    on_api_lost: Callable[[str], None] | None = None,
    timings: SlotTimings | None = None,
) -> Iterator[Hold]:
    """Hold `target`'s slot for the block: wait for it (taking it from a holder that is gone), keep
    it alive with a heartbeat, and free it on the way out, whatever happens in the block.

    `on_api_lost(reason)` is called (from a heartbeat thread) once the API has not answered for
    `timings.api_lost_after` since the last heartbeat it recorded, or when the heartbeat
    finds the target taken over (the process was paused for longer than the take-over delay): the caller
    stops the run, since its target is, or is about to be, another run's.
    `timings` are the environment's (`takeover_after_seconds`), 60 s by default.

    Once the API is lost the slot is not freed on the way out (Prefect's client would try for minutes): the
    next run takes it over.
    """
    timings = timings or SlotTimings()
    with get_client(sync_client=True) as client:
        lease_id = _acquire(client, target, flow_run_id, logger, timings)
    acquired = time.monotonic()
    hold = Hold(target)
    heartbeat = _Heartbeat(hold, flow_run_id, lease_id, logger, on_api_lost, timings)
    heartbeat.start()
    try:
        yield hold
    finally:
        heartbeat.stop()
        if hold.api_lost:
            logger.warning(
                "Target %r is not freed: the Prefect API is out of reach. The next run takes it over %.0f s after "
                "this run's last heartbeat", target, timings.takeover_after,
            )  # fmt: skip
        else:
            _free(target, flow_run_id, lease_id, time.monotonic() - acquired, logger, timings)


def _free(target: str, me: UUID, lease_id: UUID, held_seconds: float, logger: Logger, timings: SlotTimings) -> None:
    """Release the slot on the way out, whatever the block did: a failure is logged, and the run's outcome stands."""
    try:
        with get_client(sync_client=True) as client:
            _release(client, target, me, lease_id, held_seconds, logger, timings)
    except Exception as problem:  # the next run takes the slot over
        logger.warning(
            "Could not free target %r (%s): the next run takes it over within %.0f s",
            target, problem, timings.takeover_after,
        )  # fmt: skip


def _acquire(client: SyncPrefectClient, target: str, me: UUID, logger: Logger, timings: SlotTimings) -> UUID:
    unclaimed_since: datetime | None = None
    reported_at = 0.0
    claims: list[str] = []
    while True:
        lease_id = _try_acquire(client, target, me, logger, timings)
        if lease_id is not None:
            for name in claims:  # recorded as holder now: a late claimant reads that the dead run is no longer it
                with suppress(ObjectNotFound):
                    client.delete_variable_by_name(name)
            return lease_id
        holder = read_holder(client, target)
        unclaimed_since = (unclaimed_since or datetime.now(UTC)) if holder is None else None
        reason = why_holder_is_gone(
            client, holder, unclaimed_since=unclaimed_since or datetime.now(UTC), timings=timings
        )
        if reason is not None:
            claim = _claim_take_over(client, target, holder, me, timings)
            if claim is not None:
                claims += [name for name in claim if name not in claims]
                if _take_over(client, target, holder, reason, logger, timings):
                    continue
        if time.monotonic() - reported_at >= WAITING_REPORT_EVERY_SECONDS:
            reported_at = time.monotonic()
            logger.info("Waiting for target %r: %s", target, _holding(client, holder))
        time.sleep(timings.poll)


def _try_acquire(client: SyncPrefectClient, target: str, me: UUID, logger: Logger, timings: SlotTimings) -> UUID | None:
    """The lease on the target's slot, or None while another run holds it."""
    limit = target_concurrency_limit(target)
    try:
        response = client.increment_concurrency_slots_with_lease(
            names=[limit], slots=1, mode="concurrency", lease_duration=timings.lease,
            holder=ConcurrencyLeaseHolder(type="flow_run", id=me),
        )  # fmt: skip
    except PrefectHTTPStatusError as error:
        if error.response.status_code == _LOCKED:
            return None
        raise
    granted = response.json()
    lease_id = UUID(granted["lease_id"])
    previous = read_holder(client, target)
    write_holder(client, target, Holder(me, datetime.now(UTC), lease_id))  # at once: waiting runs read it
    if not granted["limits"]:
        logger.warning("No concurrency limit %s: runs on %r are not serialized (run the setup)", limit, target)
    if previous is not None and previous.flow_run_id != me:
        _crash_a_holder_left_behind(client, target, previous, logger, timings)
    return lease_id


def _crash_a_holder_left_behind(
    client: SyncPrefectClient, target: str, previous: Holder, logger: Logger, timings: SlotTimings
) -> None:
    """The slot was free, yet the record named another run: one that could not free it, or whose lease
    the server let expire (a run cut off from an API that stayed up stops itself, and nothing else
    would end its flow run). If it is gone and Prefect still shows it running, mark it Crashed."""
    reason = why_holder_is_gone(client, previous, unclaimed_since=datetime.now(UTC), timings=timings)
    if reason is not None and _mark_crashed(client, previous.flow_run_id, reason):
        logger.warning(
            "Target %r was free, but the run that last held it is gone: %s. Marked it Crashed.", target, reason
        )


def _claim_take_over(
    client: SyncPrefectClient, target: str, gone: Holder | None, me: UUID, timings: SlotTimings
) -> list[str] | None:
    """This run's claim to take the slot over from `gone` (the claims' names, the stale ones before it
    included, for the winner to delete once it holds the target), or None if another waiting run has it.

    A claim older than the take-over delay belongs to a run that died or stalled before taking over:
    the next attempt's name is then free to claim."""
    names: list[str] = []
    for attempt in itertools.count(1):
        names.append(claim_variable(target, gone, attempt))
        existing = _read_record(client, names[-1])
        if existing is None:
            try:
                value = Holder(me, datetime.now(UTC)).to_value()
                client.create_variable(VariableCreate(name=names[-1], value=value))
            except ObjectAlreadyExists:  # the server's 409: another waiting run created it first
                return None
            return names
        claim = Holder.from_value(*existing)  # this run's own too: a claim serves one take-over
        if claim is None or claim.recorded_ago < timedelta(seconds=timings.takeover_after):
            return None
    raise AssertionError("unreachable")  # pragma: no cover


def _take_over(
    client: SyncPrefectClient, target: str, gone: Holder | None, reason: str, logger: Logger, timings: SlotTimings
) -> bool:
    """Free the slot of a holder that is gone, once this run holds the claim; False if the holder changed
    in the meantime (the slot was freed and taken: nothing to take over)."""
    if not _still_held_by(client, target, gone):
        return False
    logger.warning("Target %r was held by a run that is gone: %s. Taking its slot.", target, reason)
    if gone is not None and gone.lease_id is not None and _renew(client, gone.lease_id, timings):
        client.release_concurrency_slots_with_lease(gone.lease_id)  # frees the slot and ends the lease
    elif _slot_still_counted_for(client, target, gone):  # the server lost the lease (a restart)
        client.update_global_concurrency_limit(
            target_concurrency_limit(target), GlobalConcurrencyLimitUpdate(active_slots=0)
        )
    if gone is not None:
        _mark_crashed(client, gone.flow_run_id, reason)
    return True


def _slot_still_counted_for(client: SyncPrefectClient, target: str, gone: Holder | None) -> bool:
    """With the gone holder's lease no longer on the server: whether the slot is still counted for it (the
    server restarted and lost the lease, and nothing would ever free the slot), rather than already freed
    (the lease expired and the server freed it) and perhaps taken by a run that is recording itself."""
    if client.read_global_concurrency_limit_by_name(target_concurrency_limit(target)).active_slots == 0:
        return False
    time.sleep(RECORD_SETTLE_SECONDS)  # a run that has just got the slot records itself within this
    return _still_held_by(client, target, gone)


def _still_held_by(client: SyncPrefectClient, target: str, gone: Holder | None) -> bool:
    """Whether the target's record still names the run `gone` (None: still no run)."""
    now = read_holder(client, target)
    return (now.flow_run_id if now else None) == (gone.flow_run_id if gone else None)


def _mark_crashed(client: SyncPrefectClient, flow_run_id: UUID, reason: str) -> bool:
    """Mark the run Crashed unless it has ended; whether it was marked."""
    try:
        flow_run = client.read_flow_run(flow_run_id)
    except ObjectNotFound:
        return False
    if flow_run.state is not None and flow_run.state.is_final():
        return False
    client.set_flow_run_state(
        flow_run_id, Crashed(message=f"Found gone by the next run on its target: {reason}."), force=True
    )
    return True


def _holding(client: SyncPrefectClient, holder: Holder | None) -> str:
    if holder is None:
        return "its slot is taken and no run has claimed it yet"
    try:
        name = client.read_flow_run(holder.flow_run_id).name
    except ObjectNotFound:
        name = str(holder.flow_run_id)
    return f"flow run {name!r} holds it (last heartbeat {holder.recorded_ago.total_seconds():.0f} s ago)"


def _release(
    client: SyncPrefectClient,
    target: str,
    me: UUID,
    lease_id: UUID,
    held_seconds: float,
    logger: Logger,
    timings: SlotTimings,
) -> None:
    holder = read_holder(client, target)
    if holder is not None and holder.flow_run_id != me:
        logger.warning("Target %r was taken over while this run held it: leaving the slot to its new holder", target)
        return
    if holder is not None:
        client.delete_variable_by_name(holder_variable(target))
    if _renew(client, lease_id, timings):
        client.release_concurrency_slots_with_lease(lease_id)
    elif holder is None:  # taken over (which ended the lease) and released since: the slot may be a third run's
        logger.warning("Target %r was taken over while this run held it, and released since", target)
    else:  # the server restarted and lost the lease: free the slot it still counts
        limit = target_concurrency_limit(target)
        client.release_concurrency_slots(names=[limit], slots=1, occupancy_seconds=max(held_seconds, 0.001))


def _renew(client: SyncPrefectClient, lease_id: UUID, timings: SlotTimings) -> bool:
    """Renew the lease; False if the server no longer has it."""
    try:
        client.renew_concurrency_lease(lease_id, timings.lease)
    except PrefectHTTPStatusError as error:
        if error.response.status_code in (404, _LEASE_GONE):
            return False
        raise
    return True


class _Heartbeat:
    """Renews the lease and the holder record while the run holds the target, and stops the run once the
    API has been out of reach for `api_lost_after`, or once it finds the target taken over.

    Two threads, because a call that hangs must not hold up the clock: the beats, at a fixed rate from each
    beat's start, and the watch, which sleeps until the deadline that the last recorded beat set.
    """

    def __init__(
        self,
        hold: Hold,
        flow_run_id: UUID,
        lease_id: UUID,
        logger: Logger,
        on_api_lost: Callable[[str], None] | None,
        timings: SlotTimings,
    ) -> None:
        self.hold, self.flow_run_id, self.lease_id, self.logger = hold, flow_run_id, lease_id, logger
        self.on_api_lost, self.timings = on_api_lost, timings
        self.ended = threading.Event()  # stopped, or lost: no more beats
        self.changed = threading.Condition()  # a beat's outcome, or the end: guards the two fields below
        self.last_recorded = time.monotonic()  # when the last recorded heartbeat was stamped (acquiring counts)
        self.last_problem: Exception | None = None
        self.lease_lost = False
        # In the caller's context: Prefect's settings (the API the caller chose, with temporary_settings too)
        # are context variables, which a new thread would not see.
        self.threads = [
            threading.Thread(
                target=contextvars.copy_context().run, args=(run,), name=f"{name}-{self.target}", daemon=True
            )
            for name, run in (("heartbeat", self._beats), ("heartbeat-watch", self._watch))
        ]

    @property
    def target(self) -> str:
        return self.hold.target

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """End the beats. Their threads are waited for, unless the API is lost: a beat may then be stuck in a call
        for up to `call_timeout`, and it ends on its own once the call gives up (the threads are daemons)."""
        with self.changed:
            self.ended.set()
            self.changed.notify_all()
        if self.hold.api_lost:
            return
        for thread in self.threads:
            thread.join(timeout=self.timings.heartbeat)

    def _beats(self) -> None:
        # Each call is tried again while the API is unavailable (see _persist); the watch is the judge.
        with (
            temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}),
            get_client(sync_client=True, httpx_settings={"timeout": self.timings.call_timeout}) as client,
        ):
            next_beat = time.monotonic() + self.timings.heartbeat
            while not self.ended.wait(max(next_beat - time.monotonic(), 0)):
                next_beat = time.monotonic() + self.timings.heartbeat  # a slow beat does not push the next ones back
                try:
                    beat = self._beat(client)
                except Exception as problem:  # the API may be away for a while: try again next beat
                    self.logger.debug("Heartbeat of target %r failed: %s", self.target, problem)
                    self._outcome(problem=problem)
                    continue
                if isinstance(beat, str):
                    self._lose(
                        f"target {self.target!r} was taken over while this run was silent for more than "
                        f"{self.timings.takeover_after:.0f} s (the process was paused or starved): {beat}"
                    )
                    return
                self._outcome(recorded=beat)

    def _outcome(self, *, recorded: float | None = None, problem: Exception | None = None) -> None:
        with self.changed:
            self.last_recorded = recorded if recorded is not None else self.last_recorded
            self.last_problem = problem
            self.changed.notify_all()

    def _watch(self) -> None:
        reason = None
        with self.changed:
            while reason is None and not self.ended.is_set():
                deadline = self.last_recorded + self.timings.api_lost_after
                if (now := time.monotonic()) < deadline:
                    self.changed.wait(deadline - now)
                # A look well past the deadline means the process was paused or starved (before the watch's first
                # look, too), not cut off: a beat started since decides, within what the take-over leaves.
                elif now - deadline <= self.timings.poll or not self._asked_again(now, late=now - deadline):
                    reason = self._api_lost()
        if reason is not None:
            self._lose(reason, api_lost=True)

    def _asked_again(self, woke_at: float, late: float) -> bool:
        """After a late look: say so in the run's log, then let a fresh beat decide (`_beat_recorded_since`)."""
        self.logger.warning(
            "The heartbeat of target %r looked %.1f s late: this process was paused or starved. Asking the Prefect "
            "API whether the target is still this run's", self.target, late,
        )  # fmt: skip
        return self._beat_recorded_since(woke_at)

    def _beat_recorded_since(self, woke_at: float) -> bool:
        """Whether a beat started after `woke_at` recorded the heartbeat (or the beats ended): it says whether the
        target is still this run's (it goes on), taken (it stops), or the API out of reach after all. Called
        holding `changed`.

        Woken before the others may take the target over, the wait ends `poll` before that moment, for the run
        to stop in: a look that was only late (a starved process whose API is in fact lost) must not keep the run
        going beside the run that takes over. Woken past it, the others may hold the target already and only the
        API can say: a beat under way when the process stopped ends with the stamp it took before, which says
        nothing of now, so the wait covers the call it was in and a whole beat after it."""
        takeover_at = self.last_recorded + self.timings.takeover_after
        if woke_at < takeover_at:
            wait = takeover_at - self.timings.poll - woke_at
        else:
            wait = self.timings.call_timeout * (_CALLS_PER_BEAT + 1)
        return self.changed.wait_for(lambda: self.last_recorded >= woke_at or self.ended.is_set(), wait)

    def _api_lost(self) -> str:
        """Why the run stops: for how long, and the last call's problem. Called holding `changed`."""
        silence, problem = time.monotonic() - self.last_recorded, self.last_problem
        api = PREFECT_API_URL.value()  # the caller's, as the beats' client reads it: the thread has its context
        last_call = f"{type(problem).__name__}: {problem}" if problem else "still waiting for an answer"
        return (
            f"the Prefect API at {str(api).rstrip('/')} has not answered for {silence:.0f} s (last call: "
            f"{last_call}). Check the Prefect server (`prefect server status`) or PREFECT_API_URL"
        )

    def _lose(self, reason: str, *, api_lost: bool = False) -> None:
        with self.changed:
            if self.ended.is_set():
                return
            self.ended.set()
            self.hold.api_lost = api_lost
            self.changed.notify_all()
        if self.on_api_lost is not None:
            self.on_api_lost(reason)

    def _beat(self, client: SyncPrefectClient) -> float | str:
        """Say this run is alive: when (on the monotonic clock) it stamped the heartbeat the other runs read,
        or, if another run took the target over, who has it now."""

        def current_holder() -> Holder | None:
            return self._persist(lambda: read_holder(client, self.target))

        holder = current_holder()
        lease_ended = False
        if self._taken_by(holder) is None and not self.lease_lost:
            lease_ended = not self._persist(lambda: _renew(client, self.lease_id, self.timings))
            if lease_ended:
                # A take-over ends the lease (so does a server restart), and the record read above may be from
                # before a pause: read it again, for writing this run back would take the target from the run
                # that took it over.
                holder = current_holder()
        if taken := self._taken_by(holder):
            return taken
        if holder is None and (lease_ended or self.lease_lost):
            # Only a holder's release deletes the record (a server restart keeps it), and a live run's lease
            # ends with a take-over or a restart: the run that took the target over has released it since.
            return "the run that took it over has released it since"

        def record() -> float:  # stamped at each attempt: the other runs count from the stamp they read
            stamped = time.monotonic()
            write_holder(client, self.target, Holder(self.flow_run_id, datetime.now(UTC), self.lease_id))
            return stamped

        stamped = self._persist(record)
        if lease_ended:
            self.lease_lost = True
            self.logger.info("The Prefect server lost this run's lease on %r: the heartbeat keeps it held", self.target)
        return stamped

    def _taken_by(self, holder: Holder | None) -> str | None:
        """Who holds the target, if the record names another run."""
        if holder is not None and holder.flow_run_id != self.flow_run_id:
            return f"flow run {holder.flow_run_id} holds it"
        return None

    def _persist(self, call: Callable[[], _T]) -> _T:
        """`call()`, tried again after a short pause while the API says it is unavailable for now (a busy
        server's SQLite answers 503 to one request and serves the next) or cannot be reached, until the run
        ends. The watch, not the number of tries, decides when the API counts as lost."""
        pause = _FIRST_RETRY_PAUSE
        while True:
            try:
                return call()
            except (PrefectHTTPStatusError, httpx.TransportError) as problem:
                if not _worth_another_try(problem) or self.ended.is_set():
                    raise
                self.logger.debug("Heartbeat of target %r: %s; trying again", self.target, problem)
                self._outcome(problem=problem)
            if self.ended.wait(pause):
                raise _HeartbeatEndedError
            pause = min(pause * 2, self.timings.heartbeat)


class _HeartbeatEndedError(Exception):
    """The run stopped holding its target while a heartbeat call was waiting to be tried again."""


def _worth_another_try(problem: Exception) -> bool:
    """Whether the API may answer the same call a moment later: unavailable, overloaded, or out of reach."""
    if isinstance(problem, PrefectHTTPStatusError):
        return problem.response.status_code in _TRY_AGAIN_STATUSES
    return isinstance(problem, httpx.TransportError)
