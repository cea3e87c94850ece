"""The record of a target's last run, which `--retry-failed` resumes (dbt Cloud's "rerun from failure").

dbt's own `retry` reruns the failed and skipped nodes of one command; a pipeline run is several
commands (seed, snapshot, run, test or one build), and one that failed in `run` never got to `test`.
So each run records, in the target's dbt folder, its selection and the node steps it has not completed,
and a resuming run plans from that record: `dbt retry` for a step that failed on nodes, the step in full
for one that never ran or ended without listing its nodes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dbt_pipeline.dbt_invocation import DbtCommandResult
from dbt_pipeline.dbt_project import DbtProject
from dbt_pipeline.settings import RunMode
from prefect_flows.dbt_tasks import DbtStep, plan_steps

LAST_RUN_FILE = "last_run.json"  # in the target's dbt folder: what --retry-failed resumes


@dataclass(frozen=True)
class PendingStep:
    """A node step a run has not completed: to run again in full, or, when `retry_of` names the run_results.json
    of its failed attempt, only the failed and skipped nodes that file lists (`dbt retry`)."""

    name: str
    retry_of: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """A target's last run as `--retry-failed` resumes it: its selection, and the node steps it left undone.

    Kept in the target's dbt folder (`target/<target>/last_run.json`), written when the run's steps are planned
    and again after each node step, so that a run stopped by a crash or a signal leaves its unfinished steps
    pending: a step that succeeded leaves the list; one that failed on nodes dbt listed keeps its
    run_results.json for `dbt retry`; one that failed otherwise (dbt could not run, a time limit: dbt lists
    no node it did not finish) stays as it was, to be run again.
    """

    run: str  # the flow run's name: its artifacts are in target/<target>/runs/<run>/
    mode: RunMode
    select: str | None = None
    exclude: str | None = None
    full_refresh: bool = False
    state: str | None = None  # the folder of the previous run's artifacts the steps compared with (--state)
    pending: tuple[PendingStep, ...] = ()

    @classmethod
    def load(cls, target_path: Path) -> RunRecord | None:
        """The target's last run, or None when none is recorded (or the record cannot be read)."""
        try:
            document = json.loads((target_path / LAST_RUN_FILE).read_text(encoding="utf-8"))
            return cls(**{**document, "pending": tuple(PendingStep(**step) for step in document["pending"])})
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def save(self, target_path: Path) -> None:
        """Write the record in one replace: a reader never sees half of it."""
        target_path.mkdir(parents=True, exist_ok=True)
        written = target_path / f".{LAST_RUN_FILE}.tmp"
        written.write_text(json.dumps(dataclasses.asdict(self), indent=2), encoding="utf-8")
        written.replace(target_path / LAST_RUN_FILE)

    def steps(self, project: DbtProject) -> list[DbtStep]:
        """The run's steps, as its mode and selection plan them."""
        state = Path(self.state) if self.state else None
        return plan_steps(
            project,
            mode=self.mode,
            select=self.select,
            exclude=self.exclude,
            full_refresh=self.full_refresh,
            state=state,
        )

    def retry_steps(self, project: DbtProject) -> list[DbtStep]:
        """The steps of a run resuming this one; none when it left nothing undone.

        Its pending node steps, in order (a step with a run_results.json to retry reruns only that file's failed
        and skipped nodes, the others run in full, on the nodes the run selected), between the steps that
        prepare the run (deps, parse, source freshness) and docs generate.
        """
        if not self.pending:
            return []
        pending = {step.name: step for step in self.pending}
        steps = []
        for step in self.steps(project):
            if step.is_node_step and step.name not in pending:
                continue  # done by the run
            retry_of = pending[step.name].retry_of if step.name in pending else None
            if retry_of is not None and Path(retry_of).is_file():
                step = dataclasses.replace(step, command=("retry",), retry_of=Path(retry_of))
            steps.append(step)
        return steps

    def started(self, run: str, steps: Sequence[DbtStep]) -> RunRecord:
        """The record of the run `run` about to run `steps`: every node step of them pending."""
        pending = tuple(
            PendingStep(step.name, str(step.retry_of) if step.retry_of else None) for step in steps if step.is_node_step
        )
        return dataclasses.replace(self, run=run, pending=pending)

    def done(self, step: DbtStep) -> RunRecord:
        """The record once `step` has nothing left to do (it succeeded, or had nothing to do)."""
        return dataclasses.replace(self, pending=tuple(todo for todo in self.pending if todo.name != step.name))

    def after(self, step: DbtStep, result: DbtCommandResult, saved: Path) -> RunRecord:
        """The record once `step` ended with `result`, its run_results.json kept at `saved`."""
        if result.success:
            return self.done(step)
        if result.failed_nodes and result.error is None and not result.stopped_at_time_limit and saved.is_file():
            retry = PendingStep(step.name, str(saved))
            return dataclasses.replace(
                self, pending=tuple(retry if todo.name == step.name else todo for todo in self.pending)
            )
        return self
