"""`python -m infrastructure.setup_profiles`: create the Prefect blocks and the local profiles.yml.

Run it once, and again whenever infrastructure/environments.yaml changes: it only changes what
differs, says what it did, and with --dry-run says what it would do without doing it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dbt_pipeline.environments import Environments, load_environments
from dbt_pipeline.errors import ConfigError, PipelineError
from dbt_pipeline.interrupts import exit_cleanly, signals_end_the_command

if TYPE_CHECKING:
    from infrastructure.setup_profiles.blocks import BlockPlan, ResolvedTarget
    from infrastructure.setup_profiles.concurrency_limits import LimitChange
    from infrastructure.setup_profiles.profiles_file import ProfilesFileChange


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m infrastructure.setup_profiles",
        description="Create or update the Prefect blocks and the local dbt profiles.yml from the environments file.",
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--blocks-only", action="store_true", help="only the Prefect blocks")
    only.add_argument("--profiles-only", action="store_true", help="only the local profiles.yml")
    parser.add_argument("--target", action="append", metavar="NAME", help="only this environment (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    parser.add_argument(
        "--environments-file",
        type=Path,
        help="default: $PIPELINE_ENVIRONMENTS_FILE or infrastructure/environments.yaml",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Plan everything, then apply it (unless --dry-run); exit 1 with a clear message on bad input."""
    args = _parse_args(argv)
    try:
        environments = load_environments(args.environments_file)
        with signals_end_the_command(exit_cleanly):  # a closing terminal too: no half-written file left
            return _plan_and_apply(environments, args)
    except PipelineError as error:
        print(f"setup_profiles: {error}", file=sys.stderr)
        return 1


def _plan_and_apply(environments: Environments, args: argparse.Namespace) -> int:
    # Planning needs Prefect, prefect-dbt and the adapters' clients: seconds of imports that a mistake
    # in the environments file, refused above, does not pay for.
    from dbt_pipeline.prefect_api import api_calls, require_api
    from infrastructure.setup_profiles.blocks import plan_blocks, resolve_targets
    from infrastructure.setup_profiles.concurrency_limits import apply_limits, plan_limits
    from infrastructure.setup_profiles.profiles_file import plan_profiles_files

    targets = args.target or environments.names
    resolved = resolve_targets(environments, targets)
    if args.target:
        _refuse_skipped(resolved)
    if not args.profiles_only:
        require_api()
    with api_calls():  # the API lost halfway: what was saved is kept, and the setup run again completes it
        blocks = None if args.profiles_only else plan_blocks(resolved, environments)
        slots = dict.fromkeys(environments.slot_owner(target).name for target in targets)  # shared once, in order
        limits = [] if args.profiles_only else plan_limits(list(slots))
        profiles = [] if args.blocks_only else plan_profiles_files(resolved, keyfile=environments.gcp.key_path())
        if not args.dry_run:
            if blocks is not None:
                blocks.apply()
            apply_limits(limits)
            for change in profiles:
                change.apply()
    _report(environments.source, blocks, limits, profiles, dry_run=args.dry_run)
    return 0


def _refuse_skipped(resolved: list[ResolvedTarget]) -> None:
    """A target asked for by name that cannot be set up here is an error, not a line among others."""
    for target in resolved:
        if target.configs is None:
            msg = f"cannot set up target {target.environment.name!r}: {target.skip_reason}."
            raise ConfigError(msg)


def _report(
    source: Path,
    blocks: BlockPlan | None,
    limits: list[LimitChange],
    profiles: list[ProfilesFileChange],
    *,
    dry_run: bool,
) -> None:
    from prefect.settings import PREFECT_API_URL

    from infrastructure.setup_profiles.blocks import Action

    words = (
        {Action.CREATE: "would create", Action.UPDATE: "would update", Action.SKIP: "would skip"}
        if dry_run
        else {Action.CREATE: "created", Action.UPDATE: "updated", Action.SKIP: "skipped"}
    )
    words[Action.UNCHANGED] = "unchanged"
    print(f"Environments: {source}")
    actions = []
    if blocks is not None:
        print(f"Prefect blocks ({PREFECT_API_URL.value() or 'ephemeral Prefect API'}):")
        for change in blocks.changes:
            reason = f": {change.reason}" if change.reason else ""
            print(f"  {words[change.action]:<13} {change.name}{reason}")
            actions.append(change.action)
        for limit in limits:
            print(f"  {words[limit.action]:<13} {limit.name} (global concurrency limit: one run at a time)")
            actions.append(limit.action)
        for note in blocks.notes:
            print(f"  note: {note}")
    for profiles_file in profiles:
        print(f"dbt profiles ({profiles_file.path}):")
        print(f"  {words[profiles_file.action]:<13} targets: {', '.join(profiles_file.targets) or 'none'}")
        for target, reason in profiles_file.skipped.items():
            print(f"  {words[Action.SKIP]:<13} {target}: {reason}")
        actions.append(profiles_file.action)
    changed = sum(action in (Action.CREATE, Action.UPDATE) for action in actions)
    if not changed:
        print("Nothing to change: everything is already up to date.")
    elif dry_run:
        print(f"Dry run: {changed} change(s) planned, nothing written.")
    else:
        print(f"Done: {changed} change(s) applied.")
