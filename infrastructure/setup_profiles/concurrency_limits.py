"""One run per target: a Prefect global concurrency limit of 1 slot per environment.

The flow holds the slot of its target for the whole run, so two runs on one target never overlap
(whatever deployment or laptop started them), while runs on different targets may. DuckDB allows
one writer per file and two dbt runs on one dataset race each other; both need this. Targets that
write one DuckDB file share the slot of the first of them (`Environments.slot_owner`): it alone is
created.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from dbt_pipeline.environments import target_concurrency_limit
from infrastructure.setup_profiles.blocks import Action

SLOTS = 1


@dataclass(frozen=True)
class LimitChange:
    """One concurrency limit to create or fix."""

    name: str
    action: Action


def plan_limits(targets: list[str]) -> list[LimitChange]:
    """Compare the limits the targets need with those the Prefect API holds."""
    changes = []
    with get_client(sync_client=True) as client:
        for target in targets:
            name = target_concurrency_limit(target)
            try:
                existing = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                changes.append(LimitChange(name, Action.CREATE))
                continue
            unchanged = existing.limit == SLOTS and existing.active
            changes.append(LimitChange(name, Action.UNCHANGED if unchanged else Action.UPDATE))
    return changes


def apply_limits(changes: list[LimitChange]) -> None:
    """Create or fix the limits that need it.

    A limit planned for creation may exist by now: another setup on the same Prefect API (two CI jobs, a worker
    that runs the setup as it starts) created it between our look and our create. It is then set as wanted, as a
    limit found changed is; its slots held by runs stay held.
    """
    if not any(change.action in (Action.CREATE, Action.UPDATE) for change in changes):
        return  # no client: in the default mode it would start Prefect's temporary server for nothing
    update = GlobalConcurrencyLimitUpdate(limit=SLOTS, active=True)
    with get_client(sync_client=True) as client:
        for change in changes:
            if change.action is Action.CREATE:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=change.name, limit=SLOTS))
                except ObjectAlreadyExists:
                    client.update_global_concurrency_limit(change.name, update)
            elif change.action is Action.UPDATE:
                client.update_global_concurrency_limit(change.name, update)
