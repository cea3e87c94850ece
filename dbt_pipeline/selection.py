"""Check a dbt node selection before a run starts, with dbt's own selector grammar.

dbt only reads `--select` once a step runs, after the flow run, the target's slot and a parse of the
project; a typo would then surface as a failed task with Prefect's tracebacks. The grammar is checked
here instead (dbt's pattern and method names, no manifest needed), so the mistake is reported before
anything starts. Whether the selection matches any node is left to dbt, which says so.
"""

from __future__ import annotations

from typing import NoReturn

from dbt.exceptions import InvalidSelectorError
from dbt.graph.selector_methods import MethodName
from dbt.graph.selector_spec import RAW_SELECTOR_PATTERN, SelectionCriteria

from dbt_pipeline.errors import ConfigError

SYNTAX_URL = "https://docs.getdbt.com/reference/node-selection/syntax"
# Methods that compare with a previous run's artifacts (dbt's --state): they need a state to read.
STATE_METHODS = frozenset({MethodName.State, MethodName.Result, MethodName.SourceStatus})


def check_selection(flag: str, selection: str | None) -> None:
    """Raise a ConfigError naming `flag` (e.g. "--select") if `selection` is not valid dbt selection syntax."""
    if selection is None:
        return
    # dbt's grammar: spaces separate a union, commas an intersection.
    criteria = [part for word in selection.split() for part in word.split(",") if part]
    if not criteria:
        _refuse(flag, selection, "it selects nothing")
    for criterion in criteria:
        _check_criterion(flag, selection, criterion)


def needs_state(*selections: str | None) -> bool:
    """Whether any of the (valid) selections uses a method that reads a previous run's state."""
    for selection in selections:
        for word in (selection or "").split():
            for criterion in word.split(","):
                match = RAW_SELECTOR_PATTERN.match(criterion)
                method = str((match.groupdict()["method"] if match else None) or "").split(".")[0]
                if method in STATE_METHODS:
                    return True
    return False


def _check_criterion(flag: str, selection: str, criterion: str) -> None:
    match = RAW_SELECTOR_PATTERN.match(criterion)
    if match is None:  # the pattern accepts nearly anything; kept in case dbt narrows it
        _refuse(flag, selection, f"{criterion!r} is not a selector")
    groups = match.groupdict()
    if not groups["value"]:
        _refuse(flag, selection, f"{criterion!r} has no value to match (a name, tag, path...)")
    try:
        SelectionCriteria.parse_method(groups)
    except InvalidSelectorError:
        method = str(groups["method"]).split(".")[0]
        valid = ", ".join(name.value for name in MethodName)
        _refuse(flag, selection, f"{method!r} is not a valid method name (valid: {valid})")
    if groups["childrens_parents"] and groups["children"]:
        _refuse(flag, selection, f"{criterion!r} combines the '@' prefix and a '+' suffix, which dbt refuses")


def _refuse(flag: str, selection: str, reason: str) -> NoReturn:
    msg = f"Invalid {flag} {selection!r}: {reason}. Fix the selection (dbt's syntax: {SYNTAX_URL})."
    raise ConfigError(msg)
