"""`python -m infrastructure.doctor --target NAME`: is this target ready to run?

Checks, in order, what a run needs: the environments file, the target, its profile block, the
credentials, the dbt project (it parses with the rendered profile), room on the disk of its target
folder, the warehouse (dbt connects),
the one-run-per-target concurrency limit and the notification block. Prints a checklist with the
fix for each failure and exits 1 if any check fails. It changes nothing and sends no alert.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from dbt.exceptions import UninstalledPackagesFoundError
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.exceptions import ObjectNotFound

from dbt_pipeline.blocks import SETUP_COMMAND, load_notification_block, load_profile_data
from dbt_pipeline.dbt_arguments import DbtInvocation
from dbt_pipeline.dbt_invocation import invoke_dbt
from dbt_pipeline.dbt_project import DbtProject, reports_folder, target_folder
from dbt_pipeline.environments import AnyEnvironment, Environments, load_environments, target_concurrency_limit
from dbt_pipeline.errors import BlockNotFoundError, CheckFailedError, PipelineError
from dbt_pipeline.interrupts import exit_cleanly, signals_end_the_command
from dbt_pipeline.prefect_api import require_api, unreachable
from dbt_pipeline.profiles import exported, private_profiles_dir, profile_outputs, profiles_document
from dbt_pipeline.target_slot import SlotTimings, read_holder, why_holder_is_gone

# Below this much free space a run fails for want of it whatever the project: a small project's run writes
# about 10 MiB (its manifest, results, docs and report), a large project's manifest alone is 100 MiB and more.
MIN_FREE_BYTES = 50 * 2**20


@dataclass
class Doctor:
    """Runs the checks of one target, each seeing what the earlier ones found."""

    target: str
    environments_file: Path | None = None
    # How long the warehouse may take to answer. dbt-bigquery retries a connection error for up to 10
    # minutes: without a bound, an unreachable warehouse would hang the doctor instead of failing a check.
    timeout_seconds: float = 120
    results: list[tuple[str, str, str, str]] = field(default_factory=list)  # (status, name, detail, fix)
    environments: Environments | None = None
    environment: AnyEnvironment | None = None
    api: str | None = None
    profile: dict[str, Any] | None = field(default=None, repr=False)  # the target configs of the profile block
    project: DbtProject | None = None
    credentials: dict[str, str] | None = field(default=None, repr=False)  # variables the profile reads (env_var)

    def check(self, name: str, needs: tuple[str, ...], run: Callable[[], str]) -> None:
        """Run one check unless a check it needs failed; record ok / FAIL / skip."""
        missing = [need for need in needs if getattr(self, need) is None]
        if missing:
            self.results.append(("skip", name, f"not checked: needs {', '.join(missing)}", ""))
            return
        try:
            self.results.append(("ok", name, run(), ""))
        except CheckFailedError as failure:
            self.results.append(("FAIL", name, str(failure), failure.fix))
        except PipelineError as failure:
            self.results.append(("FAIL", name, str(failure), ""))

    def run_all(self) -> bool:
        self.check("environments file", (), self._environments_file)
        self.check("target", ("environments",), self._target)
        self.check("Prefect API", (), self._prefect_api)
        self.check("profile block", ("environment", "api"), self._profile_block)
        self.check("credentials", ("environment", "profile"), self._credentials)
        self.check("dbt project", ("environment",), self._dbt_project)
        self.check("disk space", ("project",), self._disk_space)
        self.check("dbt parse", ("profile", "credentials", "project"), lambda: self._dbt(["parse"], "parses"))
        self.check("warehouse", ("profile", "credentials", "project"), self._warehouse)
        self.check("concurrency limit", ("environment", "api"), self._concurrency_limit)
        self.check("notification block", ("environment", "api"), self._notification_block)
        return not any(status == "FAIL" for status, *_ in self.results)

    def _environments_file(self) -> str:
        self.environments = load_environments(self.environments_file)
        return str(self.environments.source)

    def _target(self) -> str:
        assert self.environments is not None
        self.environment = self.environments.get(self.target)
        threads = self.environment.threads
        return f"{self.target} ({self.environment.adapter}, {threads} thread{'' if threads == 1 else 's'})"

    def _prefect_api(self) -> str:
        self.api = require_api()
        return self.api

    def _profile_block(self) -> str:
        assert self.environment is not None
        profile = load_profile_data(self.environment.profile_block_name, target=self.target)
        adapter = profile["target_configs"]["type"]
        if adapter != self.environment.adapter:
            fix = f"{SETUP_COMMAND} --target {self.target}"
            raise CheckFailedError(
                f"the block is for {adapter}, the environments file says {self.environment.adapter}", fix
            )
        self.profile = dict(profile["target_configs"])
        return str(self.environment.profile_block_name)

    def _credentials(self) -> str:
        """The adapter's own check of its credentials, and what a run would trip on (e.g. a DuckDB folder)."""
        assert self.environment is not None
        assert self.profile is not None
        self.environment.check_before_run(self._outputs(), source=self.environments_file)
        described = self.environment.check_credentials(self.profile)
        self.credentials = self.environment.run_secrets()  # the variables the profile reads (env_var)
        return described

    def _outputs(self) -> dict[str, Any]:
        assert self.profile is not None
        return profile_outputs(self.profile)

    def _dbt_project(self) -> str:
        assert self.environment is not None
        self.project = DbtProject.load(self.environment.dbt_project_dir)
        return f"{self.project.name} at {self.project.path} (profile {self.project.profile})"

    def _disk_space(self) -> str:
        """Whether a run has room to write its artifacts: a full disk fails it only at its first write."""
        assert self.project is not None
        folder = self.project.target_path(self.target)
        try:
            free = shutil.disk_usage(_nearest_existing(folder)).free
            needed = max(MIN_FREE_BYTES, space_the_last_run_took(self.project.path, self.target))
        except OSError as error:
            raise CheckFailedError(
                f"could not read {folder}: {error}", "a run writes there: let this user read and write it"
            ) from None
        if free < needed:
            raise CheckFailedError(
                f"{_mib(free)} free on the disk of {folder}, where a run writes its artifacts and report: it needs "
                f"about {_mib(needed)} (what the last run wrote there, {_mib(MIN_FREE_BYTES)} at least)",
                f"free space on that disk (the reports of old runs, in {reports_folder(self.project.path, self.target)}"
                ", can go)",
            )
        return f"{_mib(free)} free for {folder}"

    def _dbt(self, command: list[str], verb: str, *, timeout_seconds: float | None = None) -> str:
        assert self.project is not None
        project = self.project
        document = profiles_document(project.profile, self.target, self._outputs())
        # A warehouse that does not answer is given `timeout_seconds`: dbt is then interrupted, its
        # connection attempt given up, and the rendered profile (and its key) removed all the same.
        with (
            exported(self.credentials or {}),
            private_profiles_dir(document) as profiles_dir,
            tempfile.TemporaryDirectory() as scratch,
        ):
            invocation = DbtInvocation(project, profiles_dir, self.target)
            # Artifacts go to a scratch folder: the doctor leaves the project's target/ alone.
            target_path = None if command[0] == "debug" else scratch
            args = [*invocation.args(command, target_path=target_path), "--log-path", scratch]
            result = invoke_dbt(
                args,
                command=f"dbt {' '.join(command)} --target {self.target}",
                project_dir=project.path,
                timeout_seconds=timeout_seconds,
            )
        if result.stopped_at_time_limit:
            raise CheckFailedError(
                f"`dbt {' '.join(command)}` got no answer within {timeout_seconds:.0f} s",
                "check the network between this machine and the warehouse (proxy, firewall, VPN) and its endpoint; "
                "--timeout waits longer",
            )
        if not result.success:
            fix = f"run `cd {project.path} && {result.command}` to see why"
            if (result.error or "").startswith(f"{UninstalledPackagesFoundError.__name__}:"):
                fix = (
                    f"install the project's packages (a pipeline run does it first, in its deps step): "
                    f"`cd {project.path} && dbt deps`, then run the doctor again"
                )
            raise CheckFailedError(result.error or f"`{result.command}` failed", fix)
        return f"`{result.command}` {verb}"

    def _warehouse(self) -> str:
        assert self.environment is not None
        skipped = self.environment.connection_check_skipped(self._outputs())
        if skipped is not None:  # connecting would change something: the doctor changes nothing
            return skipped
        return self._dbt(["debug", "--connection"], "answers", timeout_seconds=self.timeout_seconds)

    def _concurrency_limit(self) -> str:
        assert self.environments is not None
        owner = self.environments.slot_owner(self.target)  # its own, or the one it shares a DuckDB file with
        name = target_concurrency_limit(owner.name)
        shared = "" if owner.name == self.target else f" (shared with {owner.name}: {owner.exclusive_resource()})"
        try:
            with get_client(sync_client=True) as client:
                limit = client.read_global_concurrency_limit_by_name(name)
                if limit.active_slots < limit.limit:
                    return f"{name}{shared}: {limit.limit} run at a time, free"
                return f"{name}{shared}: {limit.limit} run at a time, {self._slot_holder(client, name, owner)}"
        except ObjectNotFound:
            raise CheckFailedError(
                f"{name} does not exist: two runs on {self.target} could overlap",
                f"{SETUP_COMMAND} --target {self.target}",
            ) from None
        except (httpx.HTTPError, OSError) as error:
            raise unreachable(error) from None

    def _slot_holder(self, client: SyncPrefectClient, name: str, owner: AnyEnvironment) -> str:
        """Who holds the slot `name` of `owner`; a failed check if it is a run that is gone."""
        holder = read_holder(client, owner.name)
        # Without a record the slot may be a run starting this instant: only a waiting run can tell.
        timings = SlotTimings(owner.takeover_after_seconds)
        reason = (
            why_holder_is_gone(client, holder, unclaimed_since=datetime.now(UTC), timings=timings) if holder else None
        )
        if reason is None:
            who = f"flow run {holder.flow_run_id}" if holder else "a run that has not recorded itself yet"
            return f"held by {who}"
        raise CheckFailedError(
            f"{name} is held by a run that is gone: {reason}",
            f"the next run takes it over within {timings.takeover_after:.0f} s; to free it now: "
            f"uv run prefect gcl update {name} --active-slots 0",
        )

    def _notification_block(self) -> str:
        assert self.environment is not None
        name = self.environment.notification_block
        if name is None:
            return "none configured (failures are not alerted): set notification_block to enable alerts"
        try:
            block = load_notification_block(name, target=self.target)
        except BlockNotFoundError:
            raise CheckFailedError(
                f"{name} not found on this Prefect API", f"SLACK_WEBHOOK_URL=... {SETUP_COMMAND} --target {self.target}"
            ) from None
        return f"{name} ({type(block).__name__})"


def space_the_last_run_took(project_path: Path, target: str) -> int:
    """Bytes the last run on `target` wrote: its report (the newest in the reports folder) and the artifacts dbt
    writes again at each run (manifest.json, catalog.json...: the files at the top of the target's folder). 0
    before the first run."""
    folder = target_folder(project_path, target)
    if not folder.is_dir():
        return 0
    artifacts = sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())
    reports = [entry for entry in reports_folder(project_path, target).glob("*") if entry.is_dir()]
    if not reports:
        return artifacts
    newest = max(reports, key=lambda report: report.stat().st_mtime)
    return artifacts + sum(file.stat().st_size for file in newest.rglob("*") if file.is_file())


def _nearest_existing(path: Path) -> Path:
    """`path`, or the closest folder above it that exists (where it will be created)."""
    return next(folder for folder in (path, *path.parents) if folder.exists())


def _mib(count: int) -> str:
    return f"{count / 2**20:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    """Print the checklist; exit 1 if a check failed."""
    parser = argparse.ArgumentParser(
        prog="python -m infrastructure.doctor", description="Check that a target is ready to run."
    )
    parser.add_argument("--target", default="dev", help="environment to check (default: dev)")
    parser.add_argument(
        "--environments-file",
        type=Path,
        help="default: $PIPELINE_ENVIRONMENTS_FILE or infrastructure/environments.yaml",
    )
    parser.add_argument(
        "--timeout", type=float, default=120, help="seconds the warehouse may take to answer (default: 120)"
    )
    args = parser.parse_args(argv)
    if not args.timeout > 0:  # NaN too
        parser.error(f"--timeout must be more than 0 seconds, got {args.timeout:g}")
    doctor = Doctor(args.target, args.environments_file, timeout_seconds=args.timeout)
    with signals_end_the_command(exit_cleanly):  # a closing terminal too: the rendered profile is removed
        healthy = doctor.run_all()
    print(f"doctor: target {args.target!r}")
    for status, name, detail, fix in doctor.results:
        print(f"  [{status:^4}] {name:<19} {detail}")
        if fix:
            print(f"         {'':<19} fix: {fix}")
    print("Ready to run." if healthy else "Not ready: fix the failures above, then run the doctor again.")
    return 0 if healthy else 1
