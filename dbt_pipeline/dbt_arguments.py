"""The command line of each dbt command of a run: what every command of one flow run shares.

The pipeline and the doctor build their dbt commands here, so that both run dbt the same way (the
same profile, target, artifacts folder and logging) and a dbt upgrade that changes a command's flags
is met in one place.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click
from dbt.cli.main import cli as dbt_cli
from dbt.contracts.graph.manifest import Manifest

from dbt_pipeline.dbt_project import DbtProject
from dbt_pipeline.interrupts import TimeLimits


@dataclass(frozen=True)
class DbtInvocation:
    """What every dbt command of one flow run shares: project, rendered profile and target."""

    project: DbtProject
    profiles_dir: Path
    target: str
    limits: TimeLimits = field(default_factory=TimeLimits)
    # The project as the run's `dbt parse` step read it: every later command starts from it instead of
    # parsing the project again (see plan_steps).
    manifest: Manifest | None = field(default=None, repr=False, compare=False)

    @property
    def target_path(self) -> Path:
        """The folder of this target's dbt artifacts (manifest.json, run_results.json): one per target."""
        return self.project.target_path(self.target)

    def args(self, command: Sequence[str], *, target_path: str | None = "") -> list[str]:
        """The full argument list for `dbt <command>` in this run.

        `target_path` defaults to `target/<target>`; None leaves it out. A command that refuses the
        flag (`dbt deps` and `dbt debug` write no artifacts) never gets it: dbt's own command line
        says which, so a dbt upgrade that changes its flags cannot break a step. Commands that take it
        get `--no-write-json`: the caller writes the artifacts it needs (see `write_results`,
        `write_manifest` in dbt_invocation).
        """
        if target_path == "":
            target_path = str(self.target_path)
        options = _options_of(tuple(command))
        if "--target-path" not in options:
            target_path = None
        return [
            *command,
            "--project-dir", str(self.project.path),
            "--profiles-dir", str(self.profiles_dir),
            "--profile", self.project.profile,
            "--target", self.target,
            # dbt's lines reach the console through Prefect's logger; dbt's own stdout would double them.
            "--log-level", "none",
            # ...but its debug log file stays, as with the dbt CLI: error messages point at it.
            "--log-level-file", "debug",
            "--no-use-colors",
            # No network calls a run does not need: offline they only add a timeout.
            "--no-send-anonymous-usage-stats",
            # One folder of artifacts per target: dev and prod runs never overwrite each other.
            *(("--target-path", target_path) if target_path else ()),
            # dbt writes the whole manifest.json at the end of every command that runs nodes; a run writes it
            # once, and each command's results itself (dbt_invocation.write_results).
            *(("--no-write-json",) if "--no-write-json" in options else ()),
        ]  # fmt: skip


@functools.cache
def _options_of(command: tuple[str, ...]) -> frozenset[str]:
    """The flags `dbt <command>` takes, read from dbt's own click command (e.g. `deps`, `docs generate`)."""
    node: click.Command = dbt_cli
    for word in command:
        if not isinstance(node, click.Group) or word not in node.commands:
            break
        node = node.commands[word]
    return frozenset(
        option for parameter in node.params for option in (*parameter.opts, *getattr(parameter, "secondary_opts", ()))
    )
