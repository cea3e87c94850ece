"""Keep a successful run's dbt artifacts as its target's last good state (dbt_pipeline.state_store).

The state is what dbt's `--state` compares a later run with: the project as that run built it
(`manifest.json`), the outcome of every node (`run_results.json`) and, when freshness ran, the
sources' freshness (`sources.json`). Only a complete, successful run is kept: after a failed run, or
one limited by `--select` / `--exclude`, the nodes it did not build would look built.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dbt.version import __version__ as dbt_version

from dbt_pipeline.adapters import WarehouseEnvironment
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
    """Save the run's manifest, its node steps' results as one run_results.json, and sources.json if any.

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
    if (target_path / "sources.json").is_file():
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
