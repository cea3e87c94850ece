"""Keep a successful run's dbt artifacts as its target's last good state (dbt_pipeline.state_store).

The state is what dbt's `--state` compares a later run with: the project as that run built it
(`manifest.json`), the outcome of every node (`run_results.json`) and, when freshness ran, the
sources' freshness (`sources.json`). Only a complete, successful run is kept: after a failed run, or
one limited by `--select` / `--exclude`, the nodes it did not build would look built.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbt.cli.main import dbtRunner
from dbt.version import __version__ as dbt_version

from dbt_pipeline.adapters import WarehouseEnvironment
from dbt_pipeline.dbt_arguments import DbtInvocation
from dbt_pipeline.errors import StateStoreError
from dbt_pipeline.state_store import StateStore

STATE_FOLDER = "state"  # in the run's folder: what is saved, as saved


def keep_last_good_state(
    environment: WarehouseEnvironment,
    outputs: Mapping[str, Any],
    *,
    run_directory: Path,
    target_path: Path,
    node_steps: Sequence[str],
    metadata: Mapping[str, str],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> StateStore:
    """Save the run's manifest, its node steps' results as one run_results.json, and its source freshness.

    `node_steps` are the steps that ran nodes, in order: their run_results.json (copied into
    `run_directory` by the flow as each step ended) become one, as dbt would have written for a
    single command that ran them all.
    """
    folder = run_directory / STATE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    files = {"manifest.json": target_path / "manifest.json"}
    results = [run_directory / f"{step}.run_results.json" for step in node_steps]
    if any(path.is_file() for path in results):
        files["run_results.json"] = _merged_run_results([path for path in results if path.is_file()], folder)
    if _every_source_checked(target_path / "sources.json"):
        files["sources.json"] = target_path / "sources.json"
    store = StateStore.at(
        environment.state_location,
        environment.name,
        storage_options=environment.state_store_options(outputs),
        logger=logger,
    )
    store.save(files, run_id=run_directory.name, metadata={"dbt_version": dbt_version, **metadata})
    logger.info("Last good state of target %r saved in %s", environment.name, store.location)
    return store


def _every_source_checked(sources: Path) -> bool:
    """Whether freshness ran and read every source's latest load time.

    A source it could not check (a table not loaded yet: dbt then leaves it out of sources.json) has no
    time to compare with, and dbt's `source_status:fresher` takes it for fresher on every later run:
    such results are not kept, and the next run that builds keeps its own.
    """
    if not sources.is_file():
        return False
    results = json.loads(sources.read_text(encoding="utf-8")).get("results", [])
    return bool(results) and all("max_loaded_at" in result for result in results)


def _merged_run_results(paths: Sequence[Path], folder: Path) -> Path:
    """One run_results.json holding the results of every file in `paths` (the last one's metadata)."""
    documents = [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    merged = {
        **documents[-1],
        "results": [result for document in documents for result in document.get("results", [])],
        "elapsed_time": sum(document.get("elapsed_time", 0) for document in documents),
    }
    destination = folder / "run_results.json"
    destination.write_text(json.dumps(merged), encoding="utf-8")
    return destination


def fetch_previous_run(
    environment: WarehouseEnvironment,
    outputs: Mapping[str, Any],
    into: Path,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> Path | None:
    """The target's last good state fetched into `into`, for the report's comparison with its last successful
    run; None when it has none, or when its store cannot be read (said: the run itself does not need it)."""
    store = StateStore.at(
        environment.state_location,
        environment.name,
        storage_options=environment.state_store_options(outputs),
        logger=logger,
    )
    try:
        state = store.fetch(into)
    except StateStoreError as error:
        logger.warning("%s The report does not compare this run with the last successful one.", error)
        return None
    return state.path if state is not None else None


def fetch_compared_state(
    environment: WarehouseEnvironment,
    running: WarehouseEnvironment,
    outputs: Mapping[str, Any],
    into: Path,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> Path | None:
    """Fetch `environment`'s last good state into `into` for dbt's --state; None (said) when it has none.

    The store is read with the running target's credentials (`outputs`) when both targets are on the
    same warehouse; otherwise with the store's own defaults (Application Default Credentials on GCS).
    """
    options = environment.state_store_options(outputs if environment.adapter == running.adapter else {})
    store = StateStore.at(environment.state_location, environment.name, storage_options=options, logger=logger)
    state = store.fetch(into)
    if state is None:
        logger.warning(
            "Target %r has no last good state in %s yet: every node runs, and this run, if it succeeds, "
            "becomes the state the next one compares with.",
            environment.name,
            store.location,
        )
        return None
    logger.info(
        "Comparing with the last good state of target %r: run %s of %s UTC (%s)",
        environment.name,
        state.run_id,
        f"{state.saved_at:%Y-%m-%d %H:%M}",
        store.location,
    )
    return state.path


# The nodes that hold data: what a run builds or reuses (tests only check them).
BUILT_RESOURCE_TYPES = ("model", "seed", "snapshot")


@dataclass(frozen=True)
class NodeReuse:
    """Whether a run built a node or reused what the compared state's run built, and why."""

    unique_id: str
    built: bool
    reason: str


def explain_reuse(
    invocation: DbtInvocation,
    state: Path,
    built: Collection[str],
    *,
    compared_with: str,
    selected: bool,
    nothing_changed: bool = False,
) -> list[NodeReuse]:
    """Every model, seed and snapshot of the run's manifest: built (and why) or reused (and why), built first.

    "Changed" is dbt's own `state:modified` against `state` (code, config, macros it calls), listed with
    the run's manifest, so the reasons are the ones dbt selected on. `selected`: the user's --select chose
    what to build, not the comparison. `nothing_changed`: the comparison already selected nothing (no
    need to ask dbt again).
    """
    assert invocation.manifest is not None, "the run's parse step hands its manifest over"
    modified: set[str] = set()
    fresher: set[str] = set()
    if not nothing_changed:
        modified = selected_by(invocation, state, "state:modified") or set()
        if (state / "sources.json").is_file():
            fresher = selected_by(invocation, state, "source_status:fresher+") or set()
    explained = []
    for node in invocation.manifest.nodes.values():
        if node.resource_type not in BUILT_RESOURCE_TYPES:
            continue
        unique_id = node.unique_id
        if unique_id in built:
            if unique_id in modified:
                reason = "its code or config changed"
            elif unique_id in fresher:
                reason = "a source it reads has newer data"
            else:
                reason = "a node it is built on changed"
            explained.append(NodeReuse(unique_id, True, "selected" if selected else reason))
        elif unique_id in modified:
            explained.append(NodeReuse(unique_id, False, "changed, but left out by the selection"))
        else:
            explained.append(NodeReuse(unique_id, False, f"unchanged since the last good state of {compared_with}"))
    return sorted(explained, key=lambda item: (not item.built, item.unique_id))


def selected_by(
    invocation: DbtInvocation,
    state: Path,
    select: str,
    exclude: str | None = None,
    resource_types: Sequence[str] = BUILT_RESOURCE_TYPES,
) -> set[str] | None:
    """The unique ids `dbt ls --select <select> [--exclude <exclude>] --state <state>` lists, with the run's
    manifest (no parse): dbt's own selector, so the answer is the one a step with that selection would act on.
    None if dbt could not list them."""
    command = ["ls", "--select", select, *(["--exclude", exclude] if exclude else []), "--state", str(state)]
    command += ["--resource-types", *resource_types]
    args = [*invocation.args(command), "--output", "json", "--output-keys", "unique_id", "--quiet"]
    outcome = dbtRunner(manifest=invocation.manifest).invoke(args)
    if not outcome.success or not isinstance(outcome.result, list):
        return None
    return {json.loads(line)["unique_id"] for line in outcome.result}
