"""prefect_flows/timeline.py: the run report's timeline, rendered by vl-convert as a user gets it, from hand-made runs.

What is checked is what a user reads in the image: the names written on it, the colours of the bars, the critical
path's total, the lanes, the size of the SVG; the chart's data (its Vega-Lite specification) where the picture
alone cannot say which bar is which.
"""

from __future__ import annotations

import itertools
import random
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbt_pipeline.dbt_invocation import NodeResult
from dbt_pipeline.run_history import CriticalPath, Lineage, critical_path, executed_durations, seconds_text
from prefect_flows.timeline import (
    MAX_NAMED_ROWS,
    SLOWEST_NAMED,
    STATUS_COLOURS,
    StepNodes,
    render_timeline,
    svg_to_png,
    timeline_spec,
)

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
# The SVG a 1,000-node run may weigh, embedded in the markdown artifact (base64 adds a third).
MAX_SVG_BYTES = 300_000


def texts(svg: str) -> list[str]:
    """Every text written on the image (axis labels, titles, legend, durations), a line each."""
    found = []
    for text in ET.fromstring(svg).iter(f"{SVG}text"):
        lines = [span.text or "" for span in text.iter(f"{SVG}tspan")]
        found += lines or ["".join(text.itertext())]
    return found


def fills(svg: str) -> list[str]:
    """The fill colour of every shape drawn."""
    return [path.get("fill") or "" for path in ET.fromstring(svg).iter(f"{SVG}path")]


def layer_values(spec: dict[str, Any], datasets: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Every data row of every layer of a Vega-Lite specification (altair gathers them in `datasets`)."""
    datasets = spec.get("datasets", {}) if datasets is None else datasets
    for layer in spec.get("layer", []):
        data = layer.get("data", {})
        yield from data["values"] if "values" in data else datasets.get(data.get("name"), [])
        yield from layer_values(layer, datasets)


def bars(spec: dict[str, Any], datasets: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """The data rows drawn as a node's bar (filled bars: not the critical path's outlines)."""
    datasets = spec.get("datasets", {}) if datasets is None else datasets
    for layer in spec.get("layer", []):
        mark = layer.get("mark", {})
        if mark.get("type") == "bar" and mark.get("fillOpacity") != 0:
            yield from datasets[layer["data"]["name"]]
        yield from bars(layer, datasets)


# --------------------------------------------------------------------------------------------------
# Hand-made runs: a DAG of seeds, models and tests, scheduled on dbt threads as dbt would.


@dataclass
class Run:
    """A synthetic dbt run in steps (seed, run, test), with its lineage."""

    steps: list[StepNodes]
    lineage: Lineage
    failed: set[str] = field(default_factory=set)

    @property
    def nodes(self) -> list[NodeResult]:
        return [node for step in self.steps for node in step.nodes]

    @property
    def critical(self) -> CriticalPath:
        return critical_path(executed_durations(self.nodes), self.lineage)

    def svg(self) -> str:
        return render_timeline(self.steps, lineage=self.lineage, critical=self.critical)

    def spec(self) -> dict[str, Any]:
        return timeline_spec(self.steps, lineage=self.lineage, critical=self.critical)


def synthetic_run(
    *, seeds: int, models: int, tests: int, threads: int = 4, failing: Sequence[str] = (), seed: int = 7
) -> Run:
    """Seeds, then models each on one or two earlier models (or seeds), then tests each on one model; a node in
    `failing` errors, and every node downstream of it is skipped. Durations are mostly short with a few slow ones."""
    rng = random.Random(seed)
    parents: dict[str, tuple[str, ...]] = {}
    tested: dict[str, str] = {}
    seed_ids = [f"seed.shop.raw_{index:03d}" for index in range(seeds)]
    model_ids = [f"model.shop.model_{index:04d}" for index in range(models)]
    test_ids = [f"test.shop.not_null_model_{index:04d}_id" for index in range(tests)]
    for index, model in enumerate(model_ids):
        pool = seed_ids if index < min(10, models // 4) else model_ids[max(0, index - 60) : index]
        parents[model] = tuple(sorted(set(rng.sample(pool, min(len(pool), rng.choice((1, 2)))))))
    for index, test in enumerate(test_ids):
        parents[test] = (model_ids[(index * 7) % models],)
        tested[test] = parents[test][0]
    durations = {
        node: (20.0 + rng.random() * 10 if rng.random() < 0.01 else 0.05 + rng.random() ** 3 * 3)
        for node in [*seed_ids, *model_ids, *test_ids]
    }
    broken = _downstream(set(failing), parents)
    clock = 0.0
    steps = []
    for name, members in (("seed", seed_ids), ("run", model_ids), ("test", test_ids)):
        results, clock = _scheduled(members, parents, durations, set(failing), broken, threads, clock)
        steps.append(StepNodes(name, results))
    return Run(steps, Lineage(parents=parents, tested=tested), set(failing))


def _downstream(failing: set[str], parents: dict[str, tuple[str, ...]]) -> set[str]:
    """Every node with a failing node among its ancestors (dbt skips them)."""
    skipped: set[str] = set()
    for node in parents:  # parents are listed before children
        if any(parent in failing or parent in skipped for parent in parents[node]):
            skipped.add(node)
    return skipped


def _scheduled(
    members: list[str],
    parents: dict[str, tuple[str, ...]],
    durations: dict[str, float],
    failing: set[str],
    skipped: set[str],
    threads: int,
    clock: float,
) -> tuple[list[NodeResult], float]:
    """The step's nodes on `threads` threads from `clock`, each after its parents of the same step ended."""
    free = [clock] * threads
    ended: dict[str, float] = {}
    results = []
    for unique_id in members:
        kind, _, name = unique_id.split(".")
        if unique_id in skipped:
            results.append(NodeResult(unique_id, name, kind, "skipped", "SKIP", 0.0))
            continue
        thread = min(range(threads), key=lambda index: free[index])
        start = max([free[thread], *(ended[parent] for parent in parents.get(unique_id, ()) if parent in ended)])
        end = start + durations[unique_id]
        free[thread] = ended[unique_id] = end
        status = ("error" if kind == "model" else "fail") if unique_id in failing else "success"
        results.append(
            NodeResult(
                unique_id,
                name,
                kind,
                "pass" if status == "success" and kind == "test" else status,
                "Database Error" if unique_id in failing else "OK",
                durations[unique_id],
                started_at=T0 + timedelta(seconds=start),
                completed_at=T0 + timedelta(seconds=end),
                thread=f"Thread-{thread + 1} (worker)",
            )
        )
    return results, max([clock, *ended.values()])


SMALL = synthetic_run(seeds=3, models=12, tests=15, threads=2, failing=["model.shop.model_0004"])
LARGE = synthetic_run(
    seeds=10,
    models=390,
    tests=600,
    failing=["model.shop.model_0035", "test.shop.not_null_model_0007_id", "test.shop.not_null_model_0351_id"],
)


# --------------------------------------------------------------------------------------------------
# A small run: everything named.


def test_small_run_names_every_model_seed_and_failed_or_skipped_node() -> None:
    """On a 30-node run every model and seed is written on the image; the skipped ones say so."""
    assert len(SMALL.nodes) == 30
    written = texts(SMALL.svg())
    built = [node.name for node in SMALL.nodes if node.resource_type in ("model", "seed")]
    assert set(built) <= set(written)
    skipped = [node for node in SMALL.nodes if node.status == "skipped"]
    assert skipped, "the failing model skips its descendants"
    assert written.count("skipped") == len(skipped) + 1  # and the legend
    assert "error · " + seconds_text(next(n for n in SMALL.nodes if n.status == "error").execution_time) in written


def test_lanes_are_kinds_of_node_not_dbt_threads() -> None:
    written = texts(SMALL.svg())
    assert "SEEDS (3)" in written
    assert "MODELS (12)" in written
    assert "TESTS (15)" in written
    assert not any("Thread-" in text for text in written)


def test_tests_are_drawn_in_their_models_row() -> None:
    """On a small project a passing test is a thin bar in the row of the model it tests; a failed test or a skipped
    one gets a row of its own."""
    rows = list(layer_values(SMALL.spec()))
    thin = [row for row in bars(SMALL.spec()) if row["thin"]]
    models = {node.unique_id for node in SMALL.nodes if node.resource_type == "model"}
    assert thin
    assert all(row["row"] in models for row in thin)
    skipped_tests = [n.unique_id for n in SMALL.nodes if n.resource_type == "test" and n.status == "skipped"]
    assert skipped_tests
    assert {row["row"] for row in rows if row.get("status") == "skipped"} >= set(skipped_tests)


def test_bars_are_coloured_by_status_with_a_legend() -> None:
    """A red bar per failed node, grey crosses for skipped ones, green for the rest; the legend names each colour."""
    svg = SMALL.svg()
    failed = sum(node.status == "error" for node in SMALL.nodes)
    colours = fills(svg)
    assert colours.count(STATUS_COLOURS["failed"]) == failed + 1  # and the legend's symbol
    assert colours.count(STATUS_COLOURS["passed"]) >= sum(node.status in ("success", "pass") for node in SMALL.nodes)
    assert {"status", "passed", "warned", "failed", "skipped"} <= set(texts(svg))


def test_critical_path_is_outlined_with_its_total() -> None:
    """The subtitle gives the critical path's total and its nodes; the legend names the outline."""
    critical = SMALL.critical
    written = " ".join(texts(SMALL.svg()))
    assert f"Critical path (outlined) {seconds_text(critical.seconds)}, {len(critical.nodes)} nodes:" in written
    assert f"critical path ({seconds_text(critical.seconds)})" in written
    outlined = [row for row in layer_values(SMALL.spec()) if str(row.get("path", "")).startswith("critical path")]
    assert len(outlined) == len(critical.nodes)


def test_time_axis_runs_from_the_first_start_to_the_last_end() -> None:
    svg = SMALL.svg()
    assert "seconds since the first node started" in texts(svg)
    ends = [node.completed_at for node in SMALL.nodes if node.completed_at]
    spec = SMALL.spec()
    assert spec["layer"][0]["layer"][0]["encoding"]["x"]["scale"]["domain"] == [0, (max(ends) - T0).total_seconds()]


def test_steps_are_marked_where_they_began() -> None:
    written = texts(SMALL.svg())
    assert {"seed", "run", "test"} <= set(written)


def test_svg_needs_no_network_and_no_web_font() -> None:
    """The image renders from the markdown alone: no URL but SVG's own namespaces, no @font-face, the viewer's own
    sans-serif fonts."""
    svg = LARGE.svg()
    assert "@font-face" not in svg
    assert "@import" not in svg
    root = ET.fromstring(svg)
    urls = {value for element in root.iter() for value in element.attrib.values() if "://" in value}
    assert urls == set()
    families = {element.get("font-family") for element in root.iter(f"{SVG}text")}
    assert families == {"Helvetica, Arial, sans-serif"}


# --------------------------------------------------------------------------------------------------
# A large run: the nodes that matter named, the size bounded.


def test_large_run_names_failed_skipped_and_slowest() -> None:
    """On 1,000 nodes: every failed and skipped node and the slowest are written on the image, the rest are in
    unlabelled rows, and the image stays small enough to embed in the markdown artifact."""
    assert len(LARGE.nodes) == 1000
    started = time.perf_counter()
    svg = LARGE.svg()
    elapsed = time.perf_counter() - started
    written = set(texts(svg))
    failed = {node.name for node in LARGE.nodes if node.status in ("error", "fail")}
    skipped = {node.name for node in LARGE.nodes if node.status == "skipped"}
    slowest = {node.name for node in sorted(LARGE.nodes, key=lambda node: -node.execution_time)[:10]}
    assert len(failed) == 3
    assert 0 < len(skipped) < MAX_NAMED_ROWS - 30
    assert failed | skipped | slowest <= written
    assert len(svg.encode()) < MAX_SVG_BYTES, f"{len(svg.encode())} bytes"
    assert elapsed < 30
    unnamed = [node.name for node in LARGE.nodes if node.name not in written]
    assert len(unnamed) > 800
    assert any(text.endswith(" other models") for text in written)
    assert any(text.endswith(" other tests") for text in written)


def test_large_run_has_a_bar_per_executed_node_and_no_overlap() -> None:
    """Unlabelled nodes are packed in as few rows as threads allow, no two bars of a row overlapping."""
    rows = list(bars(LARGE.spec()))
    executed = [node for node in LARGE.nodes if node.status != "skipped"]
    assert len(rows) == len(executed)
    by_row: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if not row["thin"]:
            by_row.setdefault(row["row"], []).append((row["start"], row["end"]))
    for spans in by_row.values():
        spans.sort()
        assert all(end <= next_start + 1e-9 for (_, end), (next_start, _) in itertools.pairwise(spans))
    packed = [key for key in by_row if "\x1f" in key]
    assert 1 <= len(packed) <= 3 * 4  # at most the four threads, in the lanes of seeds, models and tests


def test_too_many_failures_are_counted_not_all_drawn() -> None:
    """A failure near the root skips most of a large project: the rows stay bounded, the slowest nodes keep rows of
    their own, and the image says how many failed or skipped nodes it does not name."""
    run = synthetic_run(seeds=10, models=390, tests=600, failing=["model.shop.model_0004"])
    troubled = {node.name for node in run.nodes if node.status in ("error", "skipped")}
    assert len(troubled) > MAX_NAMED_ROWS
    svg = run.svg()
    written = set(texts(svg))
    unnamed = troubled - written
    assert f"{len(unnamed)} more failed or skipped nodes are not named here: the report lists them all." in written
    assert "model_0004" in written
    slowest = [node.name for node in sorted(run.nodes, key=lambda node: -node.execution_time)[:SLOWEST_NAMED]]
    assert set(slowest) <= written
    assert len(written & {node.name for node in run.nodes}) <= MAX_NAMED_ROWS
    assert len(svg.encode()) < MAX_SVG_BYTES


# --------------------------------------------------------------------------------------------------
# Edge cases.


def test_without_lineage_the_timeline_still_draws_every_node() -> None:
    """Without the manifest (the parse step failed after some nodes ran? never; a run whose parse failed has no
    node) tests go to their lane and no critical path is drawn."""
    svg = render_timeline(SMALL.steps)
    written = texts(svg)
    assert not any(text.startswith("Critical path") for text in written)
    assert "TESTS (15)" in written


def test_a_one_node_run_is_titled_in_the_singular() -> None:
    seeded = synthetic_run(seeds=1, models=0, tests=0)
    assert "dbt nodes over time: 1 node (1 passed)" in texts(render_timeline(seeded.steps))


def test_timeline_of_no_timed_node_says_so() -> None:
    skipped = NodeResult("model.shop.m", "m", "model", "skipped", None, 0.0)
    assert "No node ran." in texts(render_timeline([StepNodes("run", [skipped]), StepNodes("test", [])]))
    assert "No node ran." in texts(render_timeline([]))


def test_a_warned_test_is_yellow() -> None:
    warned = NodeResult(
        "test.shop.t", "t", "test", "warn", "Got 2 results", 0.2, started_at=T0, completed_at=T0 + timedelta(seconds=1)
    )
    assert fills(render_timeline([StepNodes("test", [warned])])).count(STATUS_COLOURS["warned"]) == 2  # bar, legend


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.0412, "0.04 s"), (2.34, "2.3 s"), (59.94, "59.9 s"), (245, "4 min 05 s")]
)
def test_durations_read_as_a_user_reads_them(seconds: float, text: str) -> None:
    assert seconds_text(seconds) == text


def test_timeline_renders_to_png() -> None:
    png = svg_to_png(SMALL.svg())
    assert png.startswith(b"\x89PNG")
