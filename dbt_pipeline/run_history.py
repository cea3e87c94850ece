"""A run compared with its target's last successful run, and its critical path: pure logic, no Prefect.

Two questions a user asks of a run report beyond "what failed": *what made this run as long as it was*,
and *what got worse since the last good run*.

- The **critical path** is the longest chain of dependent nodes, by duration, through dbt's parent links
  (the manifest's `depends_on`). Adding threads cannot make a run shorter than it: to make the run
  faster, make one of its nodes faster. Nodes the run did not execute (ephemeral models, nodes left out
  by `--select`) are looked through: dbt orders the run by the same links, reconnected around them.
- The **comparison** reads the last good state the pipeline keeps for the target (a folder with its
  `manifest.json` and one `run_results.json` merging the node steps' results,
  `prefect_flows.last_good_state.keep_last_good_state`). A node is a *regression* when it took at least
  twice as long and at least one second more (both: 2x on a 0.1 s view is noise, 1 s more on a
  10-minute table is too); a *new failure* failed now and passed then.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbt_pipeline.dbt_invocation import NodeResult
from dbt_pipeline.node_status import NodeOutcome, outcome_of

# Regression thresholds: both must hold.
REGRESSION_FACTOR = 2.0
REGRESSION_MIN_SECONDS = 1.0

# Where a test is defined, in dbt's manifest (generic tests); unit tests name a single parent instead.
_TEST_TYPES = ("test", "unit_test")


def node_name(unique_id: str) -> str:
    """A node's name from its unique id (`model.shop.orders` -> `orders`)."""
    parts = unique_id.split(".")
    return parts[2] if len(parts) >= 3 else unique_id


def nodes_text(count: int) -> str:
    """A count of nodes as a user reads it: 1 node, 3 nodes."""
    return f"{count} node{'' if count == 1 else 's'}"


def seconds_text(seconds: float) -> str:
    """A duration as a user reads it: 0.04 s, 2.3 s, 4 min 05 s."""
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


@dataclass(frozen=True)
class Lineage:
    """dbt's parent links of a project, as the manifest has them.

    Attributes:
        parents: Each node's parents (`depends_on.nodes`): models, seeds, snapshots, sources.
        tested: Each test's model: where a generic test is defined (`attached_node`), or the only
            node a unit test or singular test reads. A test reading several models without one of its
            own is not in it.
    """

    parents: Mapping[str, tuple[str, ...]]
    tested: Mapping[str, str]

    @classmethod
    def of_manifest(cls, manifest: Any) -> Lineage:
        """From the `Manifest` object dbt's parse returns (the run's own, with no file read)."""
        documents = {
            unique_id: {
                "resource_type": str(node.resource_type),
                "depends_on": {"nodes": list(getattr(getattr(node, "depends_on", None), "nodes", None) or ())},
                "attached_node": getattr(node, "attached_node", None),
            }
            for table in (manifest.nodes, getattr(manifest, "unit_tests", None) or {})
            for unique_id, node in table.items()
        }
        return cls._of(documents)

    @classmethod
    def of_manifest_json(cls, document: Mapping[str, Any]) -> Lineage:
        """From a `manifest.json` as dbt writes it (a kept last good state's, say)."""
        nodes = {**(document.get("nodes") or {}), **(document.get("unit_tests") or {})}
        return cls._of(nodes)

    @classmethod
    def _of(cls, nodes: Mapping[str, Mapping[str, Any]]) -> Lineage:
        parents = {
            unique_id: tuple((node.get("depends_on") or {}).get("nodes") or ()) for unique_id, node in nodes.items()
        }
        tested = {}
        for unique_id, node in nodes.items():
            if node.get("resource_type") not in _TEST_TYPES:
                continue
            model = node.get("attached_node") or (parents[unique_id][0] if len(parents[unique_id]) == 1 else None)
            if model:
                tested[unique_id] = str(model)
        return cls(parents=parents, tested=tested)


@dataclass(frozen=True)
class CriticalPath:
    """The longest chain of dependent nodes by duration, first node first, and its total in seconds."""

    nodes: tuple[str, ...]
    seconds: float


def critical_path(durations: Mapping[str, float], lineage: Lineage) -> CriticalPath:
    """The chain of nodes of `durations` (unique id -> seconds) whose durations add up the most, each a
    descendant of the one before it through `lineage`'s parent links.

    Nodes absent from `durations` (not executed) are looked through, not stopped at: a model on an
    ephemeral one still waits for the ephemeral one's parents. Ties go to the chain found first in
    unique id order, so the answer does not depend on dict order.
    """
    if not durations:
        return CriticalPath((), 0.0)
    ran_parents = _executed_parents(durations, lineage)
    finish: dict[str, float] = {}
    before: dict[str, str | None] = {}
    for unique_id in _topological(sorted(durations), ran_parents):
        known = sorted(parent for parent in ran_parents[unique_id] if parent in finish)  # all but on a cycle
        previous = max(known, key=lambda parent: finish[parent], default=None)
        before[unique_id] = previous
        finish[unique_id] = durations[unique_id] + (finish[previous] if previous else 0.0)
    last = max(sorted(finish), key=lambda unique_id: finish[unique_id])
    chain = [last]
    while (parent := before[chain[-1]]) is not None:
        chain.append(parent)
    return CriticalPath(tuple(reversed(chain)), finish[last])


def _executed_parents(durations: Mapping[str, float], lineage: Lineage) -> dict[str, set[str]]:
    """Each executed node's nearest executed ancestors: parents that ran, or through those that did not."""
    memo: dict[str, frozenset[str]] = {}

    def nearest(unique_id: str) -> frozenset[str]:
        # Iterative (a chain of a thousand unexecuted nodes would exhaust Python's recursion limit).
        stack = [unique_id]
        while stack:
            current = stack[-1]
            pending = [p for p in lineage.parents.get(current, ()) if p not in durations and p not in memo]
            pending = [p for p in pending if p not in stack]  # a cycle (never in dbt) is cut, not followed
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            found: set[str] = set()
            for parent in lineage.parents.get(current, ()):
                found |= {parent} if parent in durations else memo.get(parent, frozenset())
            memo[current] = frozenset(found)
        return memo[unique_id]

    return {unique_id: set(nearest(unique_id)) - {unique_id} for unique_id in durations}


def _topological(nodes: Sequence[str], parents: Mapping[str, set[str]]) -> list[str]:
    """`nodes` with every node after its parents (Kahn's algorithm)."""
    children: dict[str, list[str]] = {node: [] for node in nodes}
    waiting = {node: len(parents.get(node, ())) for node in nodes}
    for node in nodes:
        for parent in sorted(parents.get(node, ())):
            children[parent].append(node)
    ready = deque(node for node in nodes if waiting[node] == 0)
    order = []
    while ready:
        node = ready.popleft()
        order.append(node)
        for child in children[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    # A cycle (dbt refuses one; a hand-edited manifest may hold it): its nodes last, their links on it ignored.
    return order + [node for node in nodes if waiting[node] > 0]


def executed_durations(nodes: Iterable[NodeResult]) -> dict[str, float]:
    """Seconds each node of the run took, for the nodes dbt executed (a skipped node took no time)."""
    return {node.unique_id: node.execution_time for node in nodes if outcome_of(node.status) is not NodeOutcome.SKIPPED}


# --------------------------------------------------------------------------------------------------
# The previous successful run.


class PreviousRunUnreadableError(Exception):
    """The last good state's folder could not be read; the message says which file and why."""


@dataclass(frozen=True)
class PreviousRun:
    """What the comparison needs of the target's last successful run.

    Attributes:
        folder: Where its run_results.json and manifest.json are.
        generated_at: When dbt wrote its run results (ISO 8601, UTC), if it said.
        durations: Seconds each executed node took.
        statuses: dbt's status of each node.
        critical_path: Its critical path; None when its manifest.json is missing or unreadable.
    """

    folder: Path
    generated_at: str | None
    durations: Mapping[str, float]
    statuses: Mapping[str, str]
    critical_path: CriticalPath | None


def read_previous_run(folder: Path) -> PreviousRun:
    """Read the last good state kept in `folder`; PreviousRunUnreadableError when its run results cannot be used."""
    if not folder.is_dir():
        raise PreviousRunUnreadableError(f"{folder} is not a folder")
    document = _json_object(folder / "run_results.json")
    results = document.get("results")
    if not isinstance(results, list) or not all(isinstance(item, dict) for item in results):
        raise PreviousRunUnreadableError(f"{folder / 'run_results.json'} has no list of results")
    statuses: dict[str, str] = {}
    durations: dict[str, float] = {}
    for item in results:
        unique_id, status, seconds = item.get("unique_id"), item.get("status"), item.get("execution_time")
        if not isinstance(unique_id, str) or not isinstance(status, str):
            continue
        statuses[unique_id] = status
        if isinstance(seconds, int | float) and outcome_of(status) is not NodeOutcome.SKIPPED:
            durations[unique_id] = float(seconds)
    generated_at = (document.get("metadata") or {}).get("generated_at")
    return PreviousRun(
        folder=folder,
        generated_at=generated_at if isinstance(generated_at, str) else None,
        durations=durations,
        statuses=statuses,
        critical_path=_previous_critical_path(folder / "manifest.json", durations),
    )


def _previous_critical_path(manifest: Path, durations: Mapping[str, float]) -> CriticalPath | None:
    try:
        return critical_path(durations, Lineage.of_manifest_json(_json_object(manifest)))
    except PreviousRunUnreadableError:
        return None


def _json_object(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PreviousRunUnreadableError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PreviousRunUnreadableError(f"{path} cannot be read: {error}") from None
    if not isinstance(document, dict):
        raise PreviousRunUnreadableError(f"{path} is not a JSON object")
    return document


@dataclass(frozen=True)
class Regression:
    """A node that took much longer than in the previous successful run."""

    unique_id: str
    before: float
    now: float

    @property
    def factor(self) -> float:
        return self.now / self.before if self.before > 0 else float("inf")


@dataclass(frozen=True)
class Comparison:
    """The run against the previous successful one: regressions (slowest down first) and new failures."""

    regressions: tuple[Regression, ...]
    new_failures: tuple[NodeResult, ...]


def is_regression(before: float, now: float) -> bool:
    """Whether a node that took `before` seconds then and `now` seconds now got slower enough to say so."""
    return now >= REGRESSION_FACTOR * before and now - before >= REGRESSION_MIN_SECONDS


def compare(nodes: Sequence[NodeResult], previous: PreviousRun) -> Comparison:
    """Compare the run's nodes with `previous`: nodes executed in both that regressed, and nodes that failed now
    and passed then (a node new in this run that fails is a failure, not a new one: it has no past)."""
    now = executed_durations(nodes)
    regressions = [
        Regression(unique_id, previous.durations[unique_id], seconds)
        for unique_id, seconds in now.items()
        if unique_id in previous.durations and is_regression(previous.durations[unique_id], seconds)
    ]
    new_failures = [
        node
        for node in nodes
        if node.failed
        and node.unique_id in previous.statuses
        and outcome_of(previous.statuses[node.unique_id]) is NodeOutcome.PASSED
    ]
    regressions.sort(key=lambda item: (-(item.now - item.before), item.unique_id))
    return Comparison(tuple(regressions), tuple(new_failures))
