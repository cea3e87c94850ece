"""dbt's node statuses, read in one place: what passed, what failed, what did not run.

Everything that judges a node (the command's outcome, the retry decision, the node's task run
state, the report, the alert) asks here, with dbt's own `NodeStatus` enum, so they cannot disagree.
"""

from __future__ import annotations

from enum import StrEnum

from dbt.artifacts.schemas.results import NodeStatus

__all__ = ["FAILED_STATUSES", "PASSED_STATUSES", "NodeOutcome", "NodeStatus", "outcome_of"]

# These make a command fail (dbt's own rule: a microbatch model with failed batches ends
# "partial success" and fails the command); a skipped node is the consequence of one of them.
FAILED_STATUSES = frozenset({NodeStatus.Error, NodeStatus.Fail, NodeStatus.RuntimeErr, NodeStatus.PartialSuccess})
PASSED_STATUSES = frozenset({NodeStatus.Success, NodeStatus.Pass, NodeStatus.Warn, NodeStatus.NoOp})


class NodeOutcome(StrEnum):
    """What a node's status means for the run."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


def outcome_of(status: str) -> NodeOutcome:
    """The outcome of a node that ended with dbt status `status`; a status this dbt does not know failed."""
    if status in PASSED_STATUSES:
        return NodeOutcome.PASSED
    if status == NodeStatus.Skipped:
        return NodeOutcome.SKIPPED
    return NodeOutcome.FAILED
