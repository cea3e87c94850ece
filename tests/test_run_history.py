"""dbt_pipeline/run_history.py: the critical path through dbt's parent links, and a run compared with the target's
last successful run, from hand-made lineages and run results; one test reads the example project's real manifest.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from dbt_pipeline.dbt_invocation import NodeResult, invoke_dbt
from dbt_pipeline.run_history import (
    CriticalPath,
    Lineage,
    PreviousRunUnreadableError,
    compare,
    critical_path,
    executed_durations,
    is_regression,
    read_previous_run,
)
from tests.conftest import copy_example_project


def lineage(**parents: str) -> Lineage:
    """A lineage from `child="parent1 parent2"` pairs, node names standing for unique ids."""
    return Lineage(parents={child: tuple(names.split()) for child, names in parents.items()}, tested={})


# --------------------------------------------------------------------------------------------------
# The critical path.


def test_critical_path_of_a_chain_is_the_chain() -> None:
    path = critical_path({"a": 1.0, "b": 2.0, "c": 3.0}, lineage(b="a", c="b"))
    assert path == CriticalPath(("a", "b", "c"), 6.0)


def test_critical_path_takes_the_longer_side_of_a_diamond() -> None:
    """a -> (b | c) -> d: the chain goes through whichever of b and c took longer, not through both."""
    durations = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.0}
    diamond = lineage(b="a", c="a", d="b c")
    assert critical_path(durations, diamond) == CriticalPath(("a", "b", "d"), 7.0)
    assert critical_path({**durations, "c": 9.0}, diamond) == CriticalPath(("a", "c", "d"), 11.0)


def test_critical_path_is_the_longest_chain_not_the_one_with_most_nodes() -> None:
    """A slow lone model outweighs a long chain of quick ones."""
    durations = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "slow": 10.0}
    assert critical_path(durations, lineage(b="a", c="b", d="c")) == CriticalPath(("slow",), 10.0)


def test_a_test_hanging_off_a_model_ends_the_path_through_it() -> None:
    """Tests depend on the model they check: a slow test extends the chain of its model, and of no other."""
    durations = {
        "seed.p.raw": 1.0,
        "model.p.stg": 2.0,
        "model.p.other": 3.0,
        "test.p.not_null_stg_id": 1.5,
        "test.p.unique_other_id": 0.1,
    }
    links = Lineage(
        parents={
            "model.p.stg": ("seed.p.raw",),
            "model.p.other": ("seed.p.raw",),
            "test.p.not_null_stg_id": ("model.p.stg",),
            "test.p.unique_other_id": ("model.p.other",),
        },
        tested={"test.p.not_null_stg_id": "model.p.stg", "test.p.unique_other_id": "model.p.other"},
    )
    assert critical_path(durations, links) == CriticalPath(("seed.p.raw", "model.p.stg", "test.p.not_null_stg_id"), 4.5)


def test_nodes_that_did_not_run_are_looked_through() -> None:
    """An ephemeral model (or one left out by --select) does not break the chain: b still waited for a."""
    path = critical_path({"a": 2.0, "c": 3.0}, lineage(eph="a", b="eph", c="b"))
    assert path == CriticalPath(("a", "c"), 5.0)


def test_parents_outside_the_run_and_sources_are_ignored() -> None:
    """A source (no result: freshness did not run) or a model that exists only in the manifest adds nothing."""
    path = critical_path({"m": 2.0}, lineage(m="source.p.raw.orders model.p.not_selected"))
    assert path == CriticalPath(("m",), 2.0)


def test_critical_path_of_no_node_is_empty() -> None:
    assert critical_path({}, lineage()) == CriticalPath((), 0.0)


def test_critical_path_survives_a_cycle_and_a_long_chain() -> None:
    """dbt refuses cycles, but a hand-edited manifest may hold one: the answer is still a path, not a hang. A chain of
    3,000 unexecuted nodes (deeper than Python's recursion limit) is looked through."""
    path = critical_path({"a": 1.0, "b": 2.0}, lineage(a="b", b="a"))
    assert path.seconds in (1.0, 2.0, 3.0)
    chain = {f"x{index}": f"x{index - 1}" for index in range(1, 3000)}
    assert critical_path({"x0": 1.0, "end": 2.0}, lineage(**chain, end="x2999")) == CriticalPath(("x0", "end"), 3.0)


def test_ties_do_not_depend_on_dict_order() -> None:
    forward = critical_path({"a": 1.0, "b": 1.0, "c": 1.0}, lineage(c="a b"))
    backward = critical_path({"c": 1.0, "b": 1.0, "a": 1.0}, lineage(c="b a"))
    assert forward == backward == CriticalPath(("a", "c"), 2.0)


def test_lineage_from_manifest_json() -> None:
    """Parents from depends_on, unit tests included; a generic test's model is where it is defined (attached_node), a
    unit test's its only parent; a test reading two models without one of its own has none."""
    document = {
        "nodes": {
            "model.p.orders": {"resource_type": "model", "depends_on": {"nodes": ["seed.p.raw"]}},
            "test.p.rel": {
                "resource_type": "test",
                "depends_on": {"nodes": ["model.p.customers", "model.p.orders"]},
                "attached_node": "model.p.orders",
            },
            "test.p.singular": {"resource_type": "test", "depends_on": {"nodes": ["model.p.a", "model.p.b"]}},
            "seed.p.raw": {"resource_type": "seed", "depends_on": {"nodes": []}},
        },
        "unit_tests": {
            "unit_test.p.orders.t": {"resource_type": "unit_test", "depends_on": {"nodes": ["model.p.orders"]}}
        },
    }
    found = Lineage.of_manifest_json(document)
    assert found.parents["model.p.orders"] == ("seed.p.raw",)
    assert found.parents["unit_test.p.orders.t"] == ("model.p.orders",)
    assert found.tested == {"test.p.rel": "model.p.orders", "unit_test.p.orders.t": "model.p.orders"}


# --------------------------------------------------------------------------------------------------
# The previous successful run.


def result(unique_id: str, status: str, seconds: float) -> NodeResult:
    kind, _, name = unique_id.split(".")
    return NodeResult(unique_id, name, kind, status, None, seconds)


def keep_state(folder: Path, results: dict[str, tuple[str, float]], manifest: Mapping[str, Any] | None = None) -> Path:
    """A last good state as keep_last_good_state writes it: merged run_results.json and manifest.json."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "metadata": {"generated_at": "2026-03-01T06:00:03.250000Z"},
        "results": [
            {"unique_id": unique_id, "status": status, "execution_time": seconds, "timing": []}
            for unique_id, (status, seconds) in results.items()
        ],
        "elapsed_time": 12.0,
    }
    (folder / "run_results.json").write_text(json.dumps(document), encoding="utf-8")
    if manifest is not None:
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("before", "now", "flagged"),
    [
        (1.0, 2.0, True),  # exactly 2x and exactly 1 s more
        (1.0, 1.99, False),  # 1 s more is not reached
        (0.1, 0.9, False),  # 9x, but 0.8 s: noise on a quick view
        (10.0, 19.0, False),  # 9 s more, but less than 2x
        (10.0, 20.0, True),
        (0.0, 1.0, True),  # a node that took no time before
        (3.0, 1.0, False),  # faster
    ],
)
def test_a_regression_is_both_2x_and_1_second_slower(before: float, now: float, flagged: bool) -> None:
    assert is_regression(before, now) is flagged


def test_comparison_flags_regressions_and_new_failures(tmp_path: Path) -> None:
    """Regressions (slowest-down first) among nodes executed both times; new failures: failed now and passed then. A
    node failing again, new in this run, or skipped now is not a new failure; a skipped node is no regression."""
    previous = read_previous_run(
        keep_state(
            tmp_path / "state",
            {
                "model.p.slower": ("success", 1.0),
                "model.p.much_slower": ("success", 2.0),
                "model.p.noise": ("success", 0.1),
                "model.p.broke": ("success", 1.0),
                "test.p.broke_too": ("pass", 0.2),
                "test.p.warned_then": ("warn", 0.2),
                "model.p.skipped_now": ("success", 0.5),
            },
        )
    )
    now = [
        result("model.p.slower", "success", 2.5),
        result("model.p.much_slower", "success", 9.0),
        result("model.p.noise", "success", 0.8),
        result("model.p.broke", "error", 0.3),
        result("test.p.broke_too", "fail", 0.2),
        result("test.p.warned_then", "error", 0.2),
        result("model.p.brand_new", "error", 0.2),
        result("model.p.skipped_now", "skipped", 0.0),
    ]
    comparison = compare(now, previous)
    assert [(item.unique_id, item.before, item.now) for item in comparison.regressions] == [
        ("model.p.much_slower", 2.0, 9.0),
        ("model.p.slower", 1.0, 2.5),
    ]
    assert comparison.regressions[0].factor == 4.5
    assert [node.unique_id for node in comparison.new_failures] == [
        "model.p.broke",
        "test.p.broke_too",
        "test.p.warned_then",
    ]


def test_a_failure_already_there_last_time_is_not_new(tmp_path: Path) -> None:
    """A last good state is a successful run, but a warned test is kept as warned and still counts as passed."""
    previous = read_previous_run(keep_state(tmp_path / "state", {"test.p.t": ("error", 0.1)}))
    assert compare([result("test.p.t", "error", 0.1)], previous).new_failures == ()


def test_previous_run_has_its_critical_path_when_its_manifest_is_there(tmp_path: Path) -> None:
    manifest = {
        "nodes": {
            "model.p.b": {"resource_type": "model", "depends_on": {"nodes": ["model.p.a"]}},
            "model.p.a": {"resource_type": "model", "depends_on": {"nodes": []}},
        }
    }
    results = {"model.p.a": ("success", 1.0), "model.p.b": ("success", 2.0)}
    previous = read_previous_run(keep_state(tmp_path / "with", results, manifest))
    assert previous.critical_path == CriticalPath(("model.p.a", "model.p.b"), 3.0)
    assert previous.generated_at == "2026-03-01T06:00:03.250000Z"
    assert read_previous_run(keep_state(tmp_path / "without", results)).critical_path is None


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("no folder", "is not a folder"),
        ("no run results", "run_results.json is missing"),
        ("not JSON", "run_results.json cannot be read: Expecting property name"),
        ("not an object", "run_results.json is not a JSON object"),
        ("no results", "run_results.json has no list of results"),
    ],
)
def test_an_unreadable_previous_run_says_which_file_and_why(tmp_path: Path, damage: str, says: str) -> None:
    folder = tmp_path / "state"
    if damage != "no folder":
        folder.mkdir()
    contents = {"not JSON": "{truncated", "not an object": "[1, 2]", "no results": '{"results": {"a": 1}}'}
    if damage in contents:
        (folder / "run_results.json").write_text(contents[damage], encoding="utf-8")
    with pytest.raises(PreviousRunUnreadableError, match=says) as raised:
        read_previous_run(folder)
    assert str(folder) in str(raised.value)


def test_a_corrupt_manifest_loses_only_the_previous_critical_path(tmp_path: Path) -> None:
    folder = keep_state(tmp_path / "state", {"model.p.a": ("success", 1.0)})
    (folder / "manifest.json").write_text("{not json", encoding="utf-8")
    previous = read_previous_run(folder)
    assert previous.critical_path is None
    assert previous.durations == {"model.p.a": 1.0}


def test_executed_durations_leave_skipped_nodes_out() -> None:
    nodes = [result("model.p.a", "success", 1.0), result("model.p.b", "skipped", 0.0), result("test.p.t", "fail", 0.5)]
    assert executed_durations(nodes) == {"model.p.a": 1.0, "test.p.t": 0.5}


# --------------------------------------------------------------------------------------------------
# The example project's real manifest (one dbt parse, ~10 s).


def test_real_manifest_lineage_and_critical_path(tmp_path: Path) -> None:
    """On the example project as dbt parses it: the run's Manifest object and the manifest.json dbt writes give the
    same lineage; every generic and unit test is tied to a model; with every node taking 1 s the critical path is a
    real chain of parent links, from a seed to a test, as long as the project's deepest chain."""
    project = copy_example_project(tmp_path / "dbt")
    (tmp_path / "profiles.yml").write_text(
        "shop_analytics:\n  target: dev\n  outputs:\n"
        f"    dev: {{type: duckdb, path: '{tmp_path / 'dev.duckdb'}', schema: main, threads: 1}}\n",
        encoding="utf-8",
    )
    parsed = invoke_dbt(
        ["parse", "--project-dir", str(project), "--profiles-dir", str(tmp_path), "--target", "dev"],
        command="dbt parse",
        project_dir=project,
    )
    assert parsed.success, parsed.error
    assert parsed.manifest is not None
    links = Lineage.of_manifest(parsed.manifest)
    written = json.loads((project / "target" / "manifest.json").read_text(encoding="utf-8"))
    assert links == Lineage.of_manifest_json(written)
    generic = [unique_id for unique_id, node in written["nodes"].items() if node.get("attached_node")]
    assert set(generic) | set(written["unit_tests"]) <= set(links.tested)
    runnable = [
        unique_id
        for unique_id, node in {**written["nodes"], **written["unit_tests"]}.items()
        if node["resource_type"] in ("seed", "snapshot", "model", "test", "unit_test")
    ]
    path = critical_path(dict.fromkeys(runnable, 1.0), links)
    assert path.nodes[0].startswith("seed.")
    assert path.nodes[-1].startswith(("test.", "unit_test."))
    assert all(parent in links.parents[child] for parent, child in itertools.pairwise(path.nodes))
    assert path.seconds == len(path.nodes) == _depth(runnable, links)


def _depth(nodes: list[str], links: Lineage) -> int:
    """The number of nodes on the deepest chain among `nodes`, computed naively (every node's depth, memoised)."""
    depth: dict[str, int] = {}
    chosen = set(nodes)

    def of(unique_id: str) -> int:
        if unique_id not in depth:
            depth[unique_id] = 1 + max((of(p) for p in links.parents.get(unique_id, ()) if p in chosen), default=0)
        return depth[unique_id]

    return max(of(unique_id) for unique_id in nodes)
