"""The Prefect blocks each environment needs, and applying them idempotently.

Per environment: `dbt-cli-profile-{env}` (prefect-dbt `DbtCliProfile`). BigQuery environments also
get `bigquery-target-configs-{env}` (`BigQueryTargetConfigs`) and share the `gcp-credentials` block
(prefect-gcp `GcpCredentials`); the profile references them, so rotating a key is one block.

Everything is planned (and validated) before anything is saved, so bad input leaves nothing half
done; a block whose content is already what the plan wants is left untouched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from prefect.blocks.core import Block
from prefect.exceptions import ObjectAlreadyExists

from dbt_pipeline.blocks import load_block
from dbt_pipeline.dbt_project import DbtProject
from dbt_pipeline.environments import AnyEnvironment, Environments
from dbt_pipeline.errors import BlockNotFoundError, ConfigError, TargetSkipped
from dbt_pipeline.profile_blocks import AnyTargetConfigs, DbtCliProfile, configs_data, load_dbt_cli_profile
from dbt_pipeline.profiles import profile_outputs
from dbt_pipeline.settings import URL_PATTERN

SLACK_WEBHOOK_VARIABLE = "SLACK_WEBHOOK_URL"
# More than the block types any of our blocks holds, nested ones included (a dbt CLI profile holds 5): see `_save`.
SAVE_ATTEMPTS = 8


class Action(StrEnum):
    """What applying the plan does to one block."""

    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    SKIP = "skip"


@dataclass(frozen=True)
class BlockChange:
    """One block of the plan: its name, what to do, and the block to save (none when skipped)."""

    name: str
    action: Action
    block: Block | None = None
    reason: str = ""


class BlockPlan:
    """Collects the blocks to save, comparing each with what the Prefect API already holds."""

    def __init__(self) -> None:
        self.changes: list[BlockChange] = []
        self.notes: list[str] = []

    def want(self, name: str, desired: Block) -> Block:
        """Plan `desired` under `name`; return the instance other blocks should reference.

        An unchanged block is referenced as it is stored, so that a parent block built on it
        compares equal to the stored parent and is left untouched too.
        """
        planned = next((change for change in self.changes if change.name == name), None)
        if planned is not None and planned.block is not None:  # shared by several targets: planned once
            return planned.block
        existing = find_block(type(desired), name)
        if existing is not None and _content(existing) == _content(desired):
            self.changes.append(BlockChange(name, Action.UNCHANGED, existing))
            return existing
        action = Action.CREATE if existing is None else Action.UPDATE
        self.changes.append(BlockChange(name, action, desired))
        return desired

    def skip(self, names: Iterable[str], reason: str) -> None:
        """Record blocks that cannot be created now, and why (each block once)."""
        planned = {change.name for change in self.changes}
        self.changes.extend(BlockChange(name, Action.SKIP, reason=reason) for name in names if name not in planned)

    def apply(self) -> None:
        """Save what changed, dependencies first (the order they were planned in)."""
        for change in self.changes:
            if change.action in (Action.CREATE, Action.UPDATE) and change.block is not None:
                _save(change.block, change.name)


@dataclass(frozen=True)
class ResolvedTarget:
    """An environment with what its blocks and profile need: its dbt project and target configs.

    `configs` is None, with `skip_reason` saying why, when the environment cannot be set up here.
    """

    environment: AnyEnvironment
    project: DbtProject
    configs: AnyTargetConfigs | None
    skip_reason: str = ""


def resolve_targets(environments: Environments, targets: list[str]) -> list[ResolvedTarget]:
    """Validate `targets` and build their target configs; raises before anything is written."""
    resolved = []
    for name in targets:
        environment = environments.get(name)
        fix = f"Fix environments.{name}.dbt_project_dir (or defaults.dbt_project_dir) in {environments.source}."
        project = DbtProject.load(environment.dbt_project_dir, fix=fix)
        try:
            configs = environment.target_configs(environments)
        except TargetSkipped as skipped:
            resolved.append(ResolvedTarget(environment, project, None, str(skipped)))
            continue
        environment.check_before_run(profile_outputs(configs_data(configs)), source=environments.source)
        resolved.append(ResolvedTarget(environment, project, configs))
    return resolved


def plan_blocks(resolved: list[ResolvedTarget], environments: Environments) -> BlockPlan:
    """The blocks of the resolved targets, compared with those the Prefect API holds."""
    plan = BlockPlan()
    for target in resolved:
        environment, configs = target.environment, target.configs
        if configs is None:
            plan.skip(environment.block_names(environments), target.skip_reason)
            continue
        configs = environment.plan_blocks(configs, plan, environments)
        profile = DbtCliProfile(name=target.project.profile, target=environment.name, target_configs=configs)
        plan.want(environment.profile_block_name, profile)
    _plan_slack_webhooks(plan, [target.environment for target in resolved])
    return plan


def _plan_slack_webhooks(plan: BlockPlan, environments: list[AnyEnvironment]) -> None:
    """The Slack webhook blocks the environments name, from $SLACK_WEBHOOK_URL when it is set."""
    url = os.environ.get(SLACK_WEBHOOK_VARIABLE)
    if url and not re.match(URL_PATTERN, url):
        # The URL is a secret (anyone holding it can post): name the variable, never quote it.
        msg = f"${SLACK_WEBHOOK_VARIABLE} is not a URL: it must start with https:// (or http:// for a local receiver)."
        raise ConfigError(msg)
    names = {env.notification_block.removeprefix("slack-webhook/") for env in environments if env.notification_block}
    if not names:
        return
    from prefect_slack import SlackWebhook  # only where a webhook is named: its import costs seconds

    for name in sorted(names):
        if "/" in name:  # another block type: the user creates it (UI or `prefect block create`)
            continue
        if url:
            plan.want(name, SlackWebhook(url=url))
        elif find_block(SlackWebhook, name) is None:
            plan.skip(
                [name], f"set ${SLACK_WEBHOOK_VARIABLE} to create this Slack webhook block (alerts are off until then)"
            )


def find_block(block_class: type[Block], name: str) -> Block | None:
    """The block `name` if it exists, else None (absent means "to create")."""
    try:
        if issubclass(block_class, DbtCliProfile):
            profile: Block = load_dbt_cli_profile(name)
            return profile
        return load_block(block_class, name)
    except BlockNotFoundError:
        return None


def _save(block: Block, name: str) -> None:
    """Save `block` as `name`, whatever another setup on the same Prefect API saves meanwhile.

    Prefect registers each block type a block holds (a profile holds its target's configs, which hold the GCP
    credentials...) by reading it, then creating it if it was not found: a setup that created it in between
    makes that create conflict (`ObjectAlreadyExists`), on a server that has never held our blocks. Each conflict
    is one more type now registered, which the next attempt reads. A block document saved meanwhile is
    overwritten.
    """
    for attempt in range(1, SAVE_ATTEMPTS + 1):
        try:
            block.save(name, overwrite=True)
            return
        except ObjectAlreadyExists:
            if attempt == SAVE_ATTEMPTS:
                raise


def _content(block: Block) -> Any:
    """A block's data including secrets, without Prefect's bookkeeping (document ids, names)."""
    return _without_private_keys(block.model_dump(mode="json", context={"include_secrets": True}))


def _without_private_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_private_keys(item) for key, item in value.items() if not key.startswith("_")}
    return value
