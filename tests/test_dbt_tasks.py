"""The dbt steps, without running dbt: which steps a run plans, their command lines, and what a retry reruns.

The end-to-end proofs (a held lock retried with `dbt retry`, packages installed by the deps step)
are in test_retries.py and test_packages.py; these pin the decisions themselves, in milliseconds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from dbt.artifacts.resources.base import FileHash
from dbt.contracts.graph.manifest import Manifest
from dbt.contracts.graph.nodes import AnalysisNode, ModelNode, SeedNode
from dbt.events.types import RunResultError, StatsLine
from dbt_common.events.base_types import msg_from_base_event

from dbt_pipeline.dbt_arguments import DbtInvocation
from dbt_pipeline.dbt_invocation import DbtCommandResult, NodeResult
from dbt_pipeline.dbt_project import DbtProject
from prefect_flows.dbt_tasks import (
    DbtStep,
    _forward_to,
    command_for_attempt,
    plan_steps,
    stale_sources,
    without_recompiling,
    without_stale_sources,
)

RUN = DbtStep("run", ("run", "--select", "orders"))


def project(tmp_path: Path, *, packages: bool = False) -> DbtProject:
    (tmp_path / "dbt_project.yml").write_text("name: shop\nprofile: shop\nversion: '1.0'\n")
    if packages:
        (tmp_path / "packages.yml").write_text("packages: []\n")
    return DbtProject.load(tmp_path)


def run_results(path: Path, *statuses: str) -> Path:
    """A run_results.json as dbt writes it, reduced to what the retry decision reads."""
    path.write_text(
        json.dumps({"results": [{"unique_id": f"model.shop.m{i}", "status": s} for i, s in enumerate(statuses)]})
    )
    return path


def test_steps_follow_the_seed_and_deps_only_with_packages(tmp_path: Path) -> None:
    """seed, snapshot, run, test, docs generate; deps first only when the project declares packages."""
    names = [step.name for step in plan_steps(project(tmp_path))]
    assert names == ["parse", "source-freshness", "seed", "snapshot", "run", "test", "docs-generate"]
    (tmp_path / "with-packages").mkdir()
    with_packages = plan_steps(project(tmp_path / "with-packages", packages=True))
    assert [step.name for step in with_packages][:3] == ["deps", "parse", "source-freshness"]
    assert not with_packages[0].runs_nodes
    assert not with_packages[-1].runs_nodes


def test_selection_and_full_refresh_reach_the_steps_that_take_them(tmp_path: Path) -> None:
    """--select/--exclude go to every node step; --full-refresh only to seed and run; docs build the whole graph."""
    steps = {
        step.name: step.command
        for step in plan_steps(project(tmp_path), select="orders+", exclude="tag:slow", full_refresh=True)
    }
    selection = ("--select", "orders+", "--exclude", "tag:slow")
    assert steps["seed"] == ("seed", *selection, "--full-refresh")
    assert steps["run"] == ("run", *selection, "--full-refresh")
    assert steps["snapshot"] == ("snapshot", *selection)
    assert steps["test"] == ("test", *selection)
    assert steps["docs-generate"] == ("docs", "generate")


def test_build_mode_runs_one_build_in_place_of_seed_to_test(tmp_path: Path) -> None:
    """Build mode: parse, one `dbt build` with the selection and --full-refresh, then docs; deps still first."""
    (tmp_path / "with-packages").mkdir()
    steps = plan_steps(
        project(tmp_path / "with-packages", packages=True), mode="build", select="orders+", full_refresh=True
    )
    assert [step.name for step in steps] == ["deps", "parse", "source-freshness", "build", "docs-generate"]
    build = steps[3]
    assert build.command == ("build", "--select", "orders+", "--full-refresh")
    assert build.runs_nodes


def test_a_compared_state_reaches_the_node_steps_with_defer(tmp_path: Path) -> None:
    """--state and --defer go to every node step (selectors compare with it, unbuilt parents read from it),
    never to parse or docs generate."""
    state = tmp_path / "state"
    for mode in ("steps", "build"):
        steps = plan_steps(project(tmp_path), mode=mode, select="state:modified+", state=state)
        for step in steps[2:]:  # after parse and source freshness, which checks every source
            expected = ("--select", "state:modified+", "--state", str(state), "--defer") if step.runs_nodes else ()
            assert step.command[len(step.command) - len(expected) :] == expected, step
            assert ("--state" in step.command) == step.runs_nodes, step
        assert steps[1].command == ("source", "freshness")


def test_a_failed_build_is_retried_with_dbt_retry(tmp_path: Path) -> None:
    """After a build whose test failed, the next attempt reruns the failed and skipped nodes only."""
    (build,) = [step for step in plan_steps(project(tmp_path), mode="build") if step.name == "build"]
    results = run_results(tmp_path / "run_results.json", "success", "fail", "skipped")
    assert command_for_attempt(build, results, attempt=2) == ("retry",)


def test_first_attempt_runs_the_step_and_forgets_earlier_results(tmp_path: Path) -> None:
    """The run_results.json of the command before is not this step's: the first attempt removes it."""
    earlier = run_results(tmp_path / "run_results.json", "error")
    assert command_for_attempt(RUN, earlier, attempt=1) == RUN.command
    assert not earlier.exists()


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (("success", "error", "skipped"), ("retry",)),
        (("pass", "fail"), ("retry",)),
        (("success", "partial success"), ("retry",)),  # dbt fails the command on it: rerun it
        (("success", "success"), RUN.command),  # nothing failed: the step itself failed to run
        ((), RUN.command),
    ],
    ids=["error", "test-failure", "partial-success", "no-failed-node", "no-node"],
)
def test_a_retry_reruns_only_failed_nodes_when_the_failed_attempt_ran_nodes(
    tmp_path: Path, statuses: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    """`dbt retry` when the failed attempt left failed nodes; else the whole step again."""
    assert command_for_attempt(RUN, run_results(tmp_path / "run_results.json", *statuses), attempt=2) == expected


def test_a_retry_after_dbt_could_not_run_reruns_the_whole_step(tmp_path: Path) -> None:
    """No run_results.json (dbt stopped before running nodes), or a damaged one: the whole step again."""
    assert command_for_attempt(RUN, tmp_path / "run_results.json", attempt=2) == RUN.command
    (tmp_path / "run_results.json").write_text("{not json")
    assert command_for_attempt(RUN, tmp_path / "run_results.json", attempt=3) == RUN.command


def test_a_step_without_nodes_leaves_the_results_of_the_step_before(tmp_path: Path) -> None:
    """docs generate writes no run_results.json: after a run, the target's is the last node step's, as with dbt."""
    docs = DbtStep("docs-generate", ("docs", "generate"), runs_nodes=False)
    tests = run_results(tmp_path / "run_results.json", "pass")
    assert command_for_attempt(docs, tests, attempt=1) == docs.command
    assert tests.exists()


def test_a_step_without_nodes_is_never_retried_with_dbt_retry(tmp_path: Path) -> None:
    """deps and docs generate run again whole: dbt retry has nothing of theirs to rerun."""
    deps = DbtStep("deps", ("deps",), runs_nodes=False)
    assert command_for_attempt(deps, run_results(tmp_path / "run_results.json", "error"), attempt=2) == ("deps",)


def test_arguments_name_project_profile_target_and_the_target_s_own_artifacts(tmp_path: Path) -> None:
    """Every command runs on the run's private profile and target, writing into target/<target>."""
    invocation = DbtInvocation(project(tmp_path), tmp_path / "profiles", "prod")
    args = invocation.args(["run", "--select", "orders"])
    assert args[:3] == ["run", "--select", "orders"]
    pairs = dict(zip(args[3::2], args[4::2], strict=False))
    assert pairs["--project-dir"] == str(tmp_path.resolve())
    assert pairs["--profiles-dir"] == str(tmp_path / "profiles")
    assert pairs["--profile"] == "shop"
    assert pairs["--target"] == "prod"
    assert pairs["--target-path"] == str(tmp_path.resolve() / "target" / "prod")


def test_commands_that_refuse_target_path_never_get_it(tmp_path: Path) -> None:
    """dbt deps and dbt debug take no --target-path (dbt's own command line says so): never passed."""
    invocation = DbtInvocation(project(tmp_path), tmp_path / "profiles", "dev")
    assert "--target-path" not in invocation.args(["deps"])
    assert "--target-path" not in invocation.args(["debug", "--connection"])
    assert "--target-path" in invocation.args(["docs", "generate"])


def _manifest(*nodes: tuple[type[Any], str, bool]) -> Manifest:
    """A manifest of nodes as dbt's parser makes them, each compiled or not (as a step leaves it)."""
    manifest = Manifest()
    for node_class, name, compiled in nodes:
        kind = {SeedNode: "seed", ModelNode: "model", AnalysisNode: "analysis"}[node_class]
        node = node_class(
            database="warehouse", schema="analytics", name=name, resource_type=kind, package_name="shop",
            path=f"{name}.sql", original_file_path=f"x/{name}.sql", unique_id=f"{kind}.shop.{name}",
            fqn=["shop", name], alias=name, checksum=FileHash.from_contents(name),
        )  # fmt: skip
        if compiled:
            node.compiled, node.compiled_code = True, f"select 1 as {name}"
        manifest.nodes[node.unique_id] = node
    return manifest


def test_docs_compile_only_what_the_run_did_not_when_that_is_less(tmp_path: Path) -> None:
    """docs generate gets --no-compile when the run's manifest has every node compiled (seeds have no SQL); an
    analysis no step ran, or a model a selection left out, is compiled alone first (`dbt compile --select` of its
    fqn); when the run compiled no more nodes than it left, docs generate compiles them all, as dbt does."""
    (docs,) = [step for step in plan_steps(project(tmp_path)) if step.name == "docs-generate"]
    compiled = _manifest((SeedNode, "raw", False), (ModelNode, "orders", True))
    assert without_recompiling(docs, compiled).command == ("docs", "generate", "--no-compile")
    assert without_recompiling(docs, compiled).compile_first == ()
    assert without_recompiling(docs, None) is docs  # no manifest handed over: dbt compiles
    for left_out in (AnalysisNode, ModelNode):
        manifest = _manifest((ModelNode, "orders", True), (ModelNode, "items", True), (left_out, "not_run", False))
        step = without_recompiling(docs, manifest)
        assert (step.command, step.compile_first) == (("docs", "generate", "--no-compile"), ("fqn:shop.not_run",))
        half = _manifest((ModelNode, "orders", True), (left_out, "not_run", False))
        assert without_recompiling(docs, half) is docs, left_out
    run = next(step for step in plan_steps(project(tmp_path)) if step.name == "run")
    assert without_recompiling(run, compiled) is run


def test_stale_sources_are_left_out_of_the_node_steps_with_what_is_built_on_them(tmp_path: Path) -> None:
    """on_stale_source: skip adds `--exclude source:<source>.<table>+` to every node step (dbt unions it with
    the user's --exclude), never to the freshness step itself or to docs."""
    stale = [
        NodeResult("source.shop.shop.customers", "customers", "source", "error", "stale", 0.1),
        NodeResult("source.shop.erp.orders", "orders", "source", "error", "stale", 0.1),
    ]
    steps = {step.name: without_stale_sources(step, stale) for step in plan_steps(project(tmp_path), exclude="x")}
    assert steps["run"].command == ("run", "--exclude", "x", "--exclude", "source:shop.customers+ source:erp.orders+")
    assert steps["source-freshness"].command == ("source", "freshness")
    assert steps["docs-generate"].command == ("docs", "generate")
    assert without_stale_sources(steps["test"], []) is steps["test"]
    assert stale_sources(DbtCommandResult("dbt source freshness", False, (*stale, _passed()), None, tmp_path)) == stale


def _passed() -> NodeResult:
    return NodeResult("source.shop.shop.stores", "stores", "source", "pass", None, 0.1)


def test_dbt_s_verdict_is_quiet_where_the_flow_judges_the_nodes() -> None:
    """A step whose nodes the flow judges (source freshness) logs dbt's per-source errors and end-of-run verdict at
    DEBUG: the flow says once what they mean. Other steps keep them at ERROR."""
    events = [
        msg_from_base_event(RunResultError(msg="Runtime Error in source products")),
        msg_from_base_event(StatsLine(stats={"pass": 0, "warn": 0, "error": 7, "skip": 0, "noop": 0, "total": 7})),
    ]
    for verdict_elsewhere, expected in ((True, logging.DEBUG), (False, logging.ERROR)):
        logger = logging.getLogger(f"test-forward-{verdict_elsewhere}")
        logger.setLevel(logging.DEBUG)
        handler = _Recorder()
        logger.addHandler(handler)
        forward = _forward_to(logger, verdict_elsewhere=verdict_elsewhere)
        for event in events:
            forward(event)
        levels = {record.getMessage(): record.levelno for record in handler.records}
        assert levels["  Runtime Error in source products"] == expected
        assert logging.INFO in levels.values()  # the summary line (not a verdict on a node) stays


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
