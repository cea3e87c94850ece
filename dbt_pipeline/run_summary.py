"""The summary of a run: what failed and why, in one file that the report writes and the alert reads.

An alert is often the only thing an on-call engineer reads, so it must carry the cause whatever
it was: a node that errored, a failing test, or a step that could not run at all (a broken `ref()`,
a compilation error), which has no node to blame. The flow writes this summary beside the run's
report (`summary.json`); the failure hook, which runs after the flow, reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dbt_common.exceptions.base import env_secrets, scrub_secrets

from dbt_pipeline.dbt_invocation import DbtCommandResult
from dbt_pipeline.files import write_atomically
from dbt_pipeline.node_status import NodeOutcome, outcome_of

SUMMARY_FILE = "summary.json"
# How much of one error the summary keeps: enough for the cause, short enough for a chat message.
ERROR_EXCERPT_CHARACTERS = 500


@dataclass(frozen=True)
class FailedNode:
    unique_id: str
    status: str
    message: str


@dataclass(frozen=True)
class StepOutcome:
    """One step: `success`, `failed` or `not run`, its command and, when dbt could not run, why."""

    name: str
    status: str
    command: str = ""
    error: str = ""


@dataclass(frozen=True)
class RunSummary:
    """Counts of the run's nodes, its failed nodes, its steps and where its report is."""

    target: str
    passed: int = 0
    skipped: int = 0
    failed: tuple[FailedNode, ...] = ()
    steps: tuple[StepOutcome, ...] = ()
    report_url: str | None = None
    report_path: str | None = field(default=None)

    @property
    def failed_step(self) -> StepOutcome | None:
        """The step that stopped the run (the steps after it did not run)."""
        return next((step for step in self.steps if step.status == "failed"), None)

    @classmethod
    def of(
        cls,
        target: str,
        steps: Sequence[tuple[str, DbtCommandResult | None]],
        *,
        secrets: Iterable[str] = (),
        report_url: str | None = None,
        report_path: Path | None = None,
    ) -> RunSummary:
        """Summarise the steps' last results; every text is trimmed and the secrets' values removed
        (`secrets`, and the DBT_ENV_SECRET_* variables dbt itself treats as secrets)."""
        hidden = [*secrets, *env_secrets()]
        # The nodes the run built or tested; sources (checked by the freshness step) are judged by the
        # environment's on_stale_source, and a stale one that fails the run is the run's error.
        nodes = [
            node for _, result in steps if result is not None for node in result.nodes if node.resource_type != "source"
        ]
        return cls(
            target=target,
            passed=sum(outcome_of(node.status) is NodeOutcome.PASSED for node in nodes),
            skipped=sum(outcome_of(node.status) is NodeOutcome.SKIPPED for node in nodes),
            failed=tuple(
                FailedNode(node.unique_id, node.status, excerpt(node.message, hidden)) for node in nodes if node.failed
            ),
            steps=tuple(_step_outcome(name, result, hidden) for name, result in steps),
            report_url=report_url,
            report_path=str(report_path) if report_path else None,
        )

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / SUMMARY_FILE
        write_atomically(path, json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def read(cls, directory: Path) -> RunSummary | None:
        """The summary a run saved in `directory`, or None if it saved none (it crashed before) or none that can
        be read (one written by another version of the pipeline): the alert then goes out without it."""
        try:
            document: dict[str, Any] = json.loads((directory / SUMMARY_FILE).read_text(encoding="utf-8"))
            return cls(
                **{
                    **document,
                    "failed": tuple(FailedNode(**node) for node in document["failed"]),
                    "steps": tuple(StepOutcome(**step) for step in document["steps"]),
                }
            )
        except (OSError, ValueError, TypeError, KeyError):
            return None


def excerpt(text: str | None, secrets: Iterable[str] = ()) -> str:
    """One line of at most ERROR_EXCERPT_CHARACTERS, with every secret value replaced (as dbt scrubs them)."""
    flat = str(scrub_secrets(" ".join((text or "").split()), [secret for secret in secrets if secret]))
    limit = ERROR_EXCERPT_CHARACTERS
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _step_outcome(name: str, result: DbtCommandResult | None, secrets: Sequence[str]) -> StepOutcome:
    if result is None:
        return StepOutcome(name, "not run")
    return StepOutcome(name, "success" if result.success else "failed", result.command, excerpt(result.error, secrets))
