"""prefect_flows/run_report.py from hand-made results: the markdown, the node table, the history section, the
embedded timeline and the files, without running dbt (the timeline itself: test_timeline.py).

The results are the pipeline's own types (`StepReport`, `DbtCommandResult`, `NodeResult`) filled in as
`invoke_dbt` fills them. `publish_report` runs once, in a real flow run on the session's Prefect
server, as the pipeline's flow calls it (two artifacts of the flow run, the files, the run summary);
the end-to-end tests (test_pipeline.py, test_alerts.py) read the report of real dbt runs.
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast
from uuid import UUID, uuid4

import pytest
from dbt.contracts.graph.manifest import Manifest
from prefect import flow
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
from prefect.context import FlowRunContext
from prefect.events.worker import EventsWorker

from dbt_pipeline.dbt_invocation import DbtCommandResult, NodeResult
from dbt_pipeline.dbt_project import DbtProject
from dbt_pipeline.run_history import CriticalPath
from dbt_pipeline.run_summary import RunSummary
from prefect_flows import run_report
from prefect_flows.run_report import (
    DOCS_FILES,
    StepReport,
    built_and_tested,
    history_section,
    node_table,
    publish_report,
    render_markdown,
    render_timeline,
    report_title,
    run_directory,
    run_lineage,
    save_step_artifacts,
    serve_docs_command,
    write_report,
)
from prefect_flows.timeline import StepNodes, timeline_spec
from tests.prefect_api import prefect_client
from tests.test_timeline import bars

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
TIMELINE_PATH = Path("/runs/r/timeline.svg")


def node(
    unique_id: str,
    status: str,
    *,
    seconds: float = 1.0,
    start: float | None = 0.0,
    thread: str = "Thread-1 (worker)",
    message: str | None = "OK",
    **fields: object,
) -> NodeResult:
    """A node as `invoke_dbt` reports it; `start` seconds after T0 (None: dbt gave it no timing)."""
    kind, _, name = unique_id.split(".")
    timing: dict[str, object] = {}
    if start is not None:
        timing = {"started_at": T0 + timedelta(seconds=start), "completed_at": T0 + timedelta(seconds=start + seconds)}
    return NodeResult(
        unique_id=unique_id,
        name=name,
        resource_type=kind,
        status=status,
        message=message,
        execution_time=seconds,
        thread=thread,
        **timing,  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


def command(line: str, *nodes: NodeResult, success: bool | None = None, error: str | None = None) -> DbtCommandResult:
    return DbtCommandResult(
        command=line,
        success=(error is None and not any(n.failed for n in nodes)) if success is None else success,
        nodes=nodes,
        error=error,
        log_path=Path("/project/logs/dbt.log"),
    )


SEEDS = (
    node("seed.shop.raw_orders", "success", seconds=0.5, adapter_response={"rows_affected": 120}),
    node("seed.shop.raw_stores", "success", seconds=0.3, start=0.5, adapter_response={"rows_affected": 4}),
)
MODELS = (
    node("model.shop.orders", "success", seconds=2.0, start=1.0, adapter_response={"rows_affected": -1}),
    node(
        "model.shop.revenue",
        "error",
        seconds=1.5,
        start=1.0,
        thread="Thread-2 (worker)",
        message="Database Error in model revenue\n  column | amount\n  does not exist",
    ),
    node("model.shop.margins", "skipped", seconds=0.0, start=None, message=None),
)
FAILED_RUN = (
    StepReport("seed", command("dbt seed --target dev", *SEEDS)),
    StepReport("run", command("dbt run --target dev", *MODELS)),
    StepReport("test", None),
    StepReport("docs-generate", None),
)


def drawn(svg: str | None) -> str:
    """The timeline of a run that built or tested nodes (render_timeline draws none otherwise)."""
    assert svg is not None
    return svg


def markdown(steps: tuple[StepReport, ...] = FAILED_RUN, timeline_path: Path = TIMELINE_PATH) -> str:
    return render_markdown(title="The title", steps=steps, timeline="<svg/>", timeline_path=timeline_path)


# --------------------------------------------------------------------------------------------------
# The markdown report.


def test_a_step_left_out_for_want_of_work_does_not_fail_the_run() -> None:
    """Docs after a compared run that built nothing are "not needed", and the run succeeded; a step left out
    after a failure, or one that ended without a result, fails it."""
    docs_not_needed = StepReport("docs-generate", None, needless=True)
    nothing_built = (StepReport("run", command("dbt run --select state:modified+")), docs_not_needed)
    assert all(step.succeeded for step in nothing_built)
    assert "| docs-generate | | not needed | |" in markdown(nothing_built)
    assert not StepReport("docs-generate", None).succeeded
    assert not FAILED_RUN[1].succeeded


def test_report_lists_every_step_with_its_status_and_node_count() -> None:
    """Steps that ran say success or failed (marked), with their command; the ones after a failure say not run."""
    report = markdown()
    assert "| seed | `dbt seed --target dev` | success | 2 |" in report
    assert "| run | `dbt run --target dev` | **failed** | 3 |" in report
    assert "| test | | not run | |" in report
    assert "| docs-generate | | not run | |" in report
    table = report.split("## Steps\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert table[:2] == ["| step | command | status | nodes |", "|---|---|---|---|"]
    assert [row.split(" | ")[0] for row in table[2:]] == ["| seed", "| run", "| test", "| docs-generate"]  # run order


def test_report_opens_with_the_title_and_totals() -> None:
    """The title, then every node counted by status (alphabetical) and the total node time."""
    lines = markdown().splitlines()
    assert lines[0] == "# The title"
    assert lines[2] == "**5 nodes** · error: 1 · skipped: 1 · success: 3 · node time 4.3 s"


def test_failures_name_each_failed_node_and_step_error_on_one_line() -> None:
    """A failed node with its status, failing rows and message (flattened to one line); a step dbt could not run."""
    test_step = command(
        "dbt test --target dev",
        node("test.shop.unique_orders_id", "fail", message="Got 3 results, configured to fail if != 0", failures=3),
        node("test.shop.not_null_orders_id", "pass"),
    )
    broken = command("dbt snapshot --target dev", error="Compilation Error\n  in snapshot orders_history")
    steps = (*FAILED_RUN[:2], StepReport("snapshot", broken), StepReport("test", test_step))
    report = markdown(steps)
    failures = report.split("## Failures\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert failures == [
        "- step **snapshot**: Compilation Error in snapshot orders_history",
        r"- `model.shop.revenue` **error**: Database Error in model revenue column \| amount does not exist",
        "- `test.shop.unique_orders_id` **fail** (3 failing rows): Got 3 results, configured to fail if != 0",
    ]


def test_a_run_without_failure_has_no_failures_section() -> None:
    report = markdown((StepReport("seed", command("dbt seed --target dev", *SEEDS)),))
    assert "## Failures" not in report
    assert "**2 nodes** · success: 2 · node time 0.8 s" in report


def test_sources_freshness_could_not_check_are_no_failures() -> None:
    """A first run on an empty warehouse: the freshness step could not check its sources (tables not loaded yet).
    Their verdict is the environment's on_stale_source, so they are not failures: a section says what was found."""
    freshness = command(
        "dbt source freshness --target dev",
        node("source.shop.customers", "runtime error", message="Table with name raw_customers does not exist!"),
        node("source.shop.orders", "error", message="ERROR STALE"),
        node("source.shop.payments", "pass"),
        success=False,
    )
    steps = (StepReport("source-freshness", freshness, judged=False), StepReport("seed", command("dbt seed", *SEEDS)))
    report = markdown(steps)
    assert "## Failures" not in report
    assert "**2 nodes** · success: 2" in report  # the seeds: sources are not built
    section = report.split("## Source freshness\n\n", 1)[1].split("\n\n## ", 1)[0]
    assert section.splitlines()[0] == "fresh: 1 · not checked: 1 · past error_after: 1"
    assert "Not checked: `customers` (Table with name raw_customers does not exist!)." in section
    spec = timeline_spec([StepNodes(step.name, step.result.nodes, step.judged) for step in steps if step.result])
    drawn = sorted(row["status"] for row in bars(spec))
    # Not failures in the timeline either: the unchecked and the stale source are drawn as warnings.
    assert drawn == ["passed", "passed", "passed", "warned", "warned"]


def test_report_shows_bigquery_bytes_only_when_billed() -> None:
    """BigQuery's bytes processed and billed, summed over the nodes; nothing for adapters that bill none."""
    on_bigquery = command(
        "dbt run --target prod",
        node("model.shop.a", "success", adapter_response={"bytes_processed": 3 * 2**29, "bytes_billed": 2**30}),
        node("model.shop.b", "success", adapter_response={"bytes_processed": None, "bytes_billed": 2**30}),
    )
    report = markdown((StepReport("run", on_bigquery),))
    assert "**BigQuery**: 1.5 GiB processed · 2.0 GiB billed" in report
    assert "BigQuery" not in markdown()


def test_report_embeds_the_timeline_and_says_where_it_is_saved() -> None:
    """The SVG is inlined as a data URI (an artifact cannot link to a local file); its path is given."""
    svg = drawn(render_timeline(FAILED_RUN))
    report = render_markdown(title="t", steps=FAILED_RUN, timeline=svg, timeline_path=TIMELINE_PATH)
    match = re.search(
        r"!\[timeline of the run's nodes by kind, the critical path outlined\]"
        r"\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)",
        report,
    )
    assert match
    assert base64.b64decode(match.group(1)).decode() == svg
    assert f"Saved as `{TIMELINE_PATH}`." in report


def test_report_points_to_the_docs_only_when_this_run_saved_them(tmp_path: Path) -> None:
    """After docs generate, the report names the saved docs site and the command that serves it."""
    timeline_path = tmp_path / "timeline.svg"
    assert "## Docs" not in markdown(timeline_path=timeline_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_text("<html></html>")
    report = markdown(timeline_path=timeline_path)
    assert f"dbt docs of this run: `{tmp_path / 'docs' / 'index.html'}`" in report
    assert f"Serve them: `{serve_docs_command(tmp_path / 'docs')}`" in report
    assert serve_docs_command(tmp_path / "docs").endswith(f"--directory {tmp_path / 'docs'}")


# --------------------------------------------------------------------------------------------------
# The node table.


def test_node_table_answers_what_failed_then_what_was_slow() -> None:
    """Failed nodes first, then skipped ones, then the rest, slowest first in each; status and duration lead."""
    table = node_table(FAILED_RUN)
    assert [row["node"] for row in table] == ["revenue", "margins", "orders", "raw_orders", "raw_stores"]
    assert [row["step"] for row in table] == ["run", "run", "run", "seed", "seed"]
    assert all(list(row) == list(table[0]) for row in table)
    assert list(table[0]) == ["status", "duration_s", "node", "type", "step", "rows_affected", "failures", "message"]


def test_node_table_keeps_dbt_order_among_equal_durations() -> None:
    steps = (StepReport("run", command("dbt run", *(node(f"model.shop.m{i}", "success") for i in (3, 1, 2)))),)
    assert [row["node"] for row in node_table(steps)] == ["m3", "m1", "m2"]


def test_node_table_row_values() -> None:
    """Each row: status, rounded duration, type, rows (unknown -1 left empty), failures, one-line message; the bytes
    columns, for every row, once the adapter reported bytes for a node (BigQuery)."""
    long_message = "x" * 250
    steps = (
        StepReport(
            "test",
            command(
                "dbt test",
                node("test.shop.t", "fail", seconds=0.12345, failures=3, message=long_message),
                node("seed.shop.s", "success", seconds=0.1, adapter_response={"rows_affected": 12, "bytes_billed": 9}),
                node("model.shop.v", "success", seconds=0.05, adapter_response={"rows_affected": -1}),
            ),
        ),
    )
    test, seed, view = node_table(steps)
    assert test == {
        "status": "fail",
        "duration_s": 0.123,
        "node": "t",
        "type": "test",
        "step": "test",
        "rows_affected": None,
        "failures": 3,
        "bytes_processed": None,
        "bytes_billed": None,
        "message": "x" * 199 + "…",
    }
    assert (seed["rows_affected"], seed["bytes_billed"]) == (12, 9)
    assert view["rows_affected"] is None


def test_report_links_the_node_table() -> None:
    url = "http://127.0.0.1:4200/artifacts/artifact/1234"
    report = render_markdown(title="t", steps=FAILED_RUN, timeline="<svg/>", timeline_path=TIMELINE_PATH, nodes_url=url)
    assert f"Every node, failures first, then slowest: [the node table]({url})." in report


def test_node_table_of_a_run_with_no_node_is_empty() -> None:
    assert node_table((StepReport("deps", command("dbt deps")), StepReport("run", None))) == []


# --------------------------------------------------------------------------------------------------
# The timeline, as the report draws it (the chart itself: test_timeline.py).


def texts(svg: str) -> list[str]:
    """Every text written on the image, a line each (a title's lines are tspans of one text)."""
    found = []
    for text in ET.fromstring(svg).iter(f"{SVG}text"):
        lines = [span.text or "" for span in text.iter(f"{SVG}tspan")]
        found += lines or ["".join(text.itertext())]
    return found


def fake_manifest(parents: dict[str, list[str]], attached: dict[str, str] | None = None) -> SimpleNamespace:
    """A stand-in for dbt's Manifest object with what the report reads of it: each node's kind, parents and, for a
    test, the model it is attached to."""
    attached = attached or {}
    return SimpleNamespace(
        nodes={
            unique_id: SimpleNamespace(
                resource_type=unique_id.split(".")[0],
                depends_on=SimpleNamespace(nodes=names),
                attached_node=attached.get(unique_id),
            )
            for unique_id, names in parents.items()
        },
        unit_tests={},
    )


MANIFEST = fake_manifest(
    {
        "seed.shop.raw_orders": [],
        "seed.shop.raw_stores": [],
        "model.shop.orders": ["seed.shop.raw_orders"],
        "model.shop.revenue": ["model.shop.orders", "seed.shop.raw_stores"],
        "model.shop.margins": ["model.shop.revenue"],
    }
)
PARSE = StepReport(
    "parse",
    DbtCommandResult(
        "dbt parse --target dev", True, (), None, Path("/project/logs/dbt.log"), manifest=cast(Manifest, MANIFEST)
    ),
)


def test_timeline_names_the_nodes_and_lanes_a_user_knows() -> None:
    """Every seed and model is named (the failed one with its status, the skipped one as skipped), lanes are kinds
    of node, never dbt's thread names."""
    written = texts(drawn(render_timeline(FAILED_RUN)))
    assert {"raw_orders", "raw_stores", "orders", "revenue", "margins", "SEEDS (2)", "MODELS (3)"} <= set(written)
    assert "error · 1.5 s" in written
    assert "skipped" in written
    assert not any("Thread-" in text for text in written)


def test_run_lineage_comes_from_the_parse_steps_manifest() -> None:
    """The parse step hands its manifest over; without one (parse failed, or a test's hand-made run) there is none."""
    lineage = run_lineage((PARSE, *FAILED_RUN))
    assert lineage is not None
    assert lineage.parents["model.shop.revenue"] == ("model.shop.orders", "seed.shop.raw_stores")
    assert run_lineage(FAILED_RUN) is None


def test_timeline_outlines_the_critical_path_given() -> None:
    lineage = run_lineage((PARSE, *FAILED_RUN))
    critical = CriticalPath(("seed.shop.raw_orders", "model.shop.orders"), 2.5)
    written = texts(drawn(render_timeline(FAILED_RUN, lineage=lineage, critical=critical)))
    assert "Critical path (outlined) 2.5 s, 2 nodes: raw_orders → orders" in written


# --------------------------------------------------------------------------------------------------
# The history: the critical path and the last successful run.


def last_good_state(folder: Path, results: dict[str, tuple[str, float]]) -> Path:
    """A last good state as prefect_flows.last_good_state keeps it: merged run_results.json and manifest.json."""
    folder.mkdir(parents=True)
    document = {
        "metadata": {"generated_at": "2026-03-01T06:00:03.250000Z"},
        "results": [
            {"unique_id": unique_id, "status": status, "execution_time": seconds}
            for unique_id, (status, seconds) in results.items()
        ],
    }
    (folder / "run_results.json").write_text(json.dumps(document), encoding="utf-8")
    manifest = {
        "nodes": {
            "model.shop.orders": {"resource_type": "model", "depends_on": {"nodes": ["seed.shop.raw_orders"]}},
            "model.shop.revenue": {"resource_type": "model", "depends_on": {"nodes": ["model.shop.orders"]}},
        }
    }
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


NODES = [node for step in FAILED_RUN if step.result for node in step.result.nodes]
CRITICAL = CriticalPath(("seed.shop.raw_orders", "model.shop.orders"), 2.5)


def test_history_without_a_previous_run_says_so_and_names_the_critical_path() -> None:
    lines = history_section(NODES, CRITICAL, None)
    assert lines[:2] == ["", "## Compared with the last successful run"]
    assert "No previous successful run of this target to compare with." in lines
    assert (
        "**Critical path: 2.5 s**, 2 nodes, each built on the one before (the run cannot take less, whatever its "
        "threads): `raw_orders` → `orders`"
    ) in lines


def test_history_flags_regressions_and_new_failures(tmp_path: Path) -> None:
    """orders took 2.0 s after 0.5 s (4x, 1.5 s more): a regression; raw_orders 0.5 s after 0.1 s is not (less than
    1 s more); revenue errored after passing: a new failure. The previous critical path's total is given beside."""
    previous = last_good_state(
        tmp_path / "state",
        {
            "seed.shop.raw_orders": ("success", 0.1),
            "model.shop.orders": ("success", 0.5),
            "model.shop.revenue": ("success", 1.2),
        },
    )
    report = "\n".join(history_section(NODES, CRITICAL, previous))
    assert f"Last successful run: 2026-03-01 06:00 UTC, kept in `{previous}`." in report
    assert "(last successful run: 1.8 s)" in report  # raw_orders 0.1 s, orders 0.5 s, revenue 1.2 s
    assert "**1 regression** (at least 2x and 1 s slower than then):" in report
    assert "| `model.shop.orders` | 2.0 s | 0.50 s | 4.0x |" in report
    assert "raw_orders` | " not in report
    assert "**1 new failure** (passed in the last successful run):\n\n- `model.shop.revenue` **error**" in report


def test_history_of_a_run_like_the_last_one_says_nothing_changed(tmp_path: Path) -> None:
    previous = last_good_state(
        tmp_path / "state",
        {
            "seed.shop.raw_orders": ("success", 0.5),
            "model.shop.orders": ("success", 1.9),
            "model.shop.revenue": ("error", 1),
        },
    )
    lines = history_section(NODES, CRITICAL, previous)
    assert "No regression: no node at least 2x and 1 s slower than then." in lines
    assert "No new failure: every node that failed now also failed or did not run then." in lines


def test_history_of_a_run_that_built_nothing_compares_nothing(tmp_path: Path) -> None:
    """A no-change run is no evidence of a regression or a new failure: no verdict either way."""
    previous = last_good_state(tmp_path / "state", {"model.shop.orders": ("success", 1.9)})
    lines = history_section([], CriticalPath((), 0.0), previous)
    assert lines[3:] == ["**Critical path**: none, no node was built or tested.", "", lines[5]]
    assert lines[5].startswith("Last successful run: ")


def test_history_with_an_unreadable_previous_run_says_why_and_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "run_results.json").write_text('{"results": [', encoding="utf-8")
    lines = history_section(NODES, CRITICAL, folder)
    reading = next(line for line in lines if line.startswith("The last successful run could not be read"))
    assert f"so nothing is compared: {folder / 'run_results.json'} cannot be read: " in reading
    assert not any("regression" in line for line in lines)
    missing = history_section(NODES, CRITICAL, tmp_path / "nowhere")
    assert (
        f"The last successful run could not be read, so nothing is compared: {tmp_path / 'nowhere'} is not a folder."
        in missing
    )


def test_history_without_a_manifest_says_the_critical_path_is_unknown() -> None:
    lines = history_section(NODES, None, None)
    assert "**Critical path**: unknown, the run has no manifest (its parse step did not succeed)." in lines
    assert "**Critical path**: none, no node was built or tested." in history_section([], CriticalPath((), 0.0), None)


def test_report_places_the_history_after_the_failures() -> None:
    history = history_section(NODES, CRITICAL, None)
    report = render_markdown(
        title="t", steps=FAILED_RUN, timeline="<svg/>", timeline_path=TIMELINE_PATH, history=history
    )
    assert (
        report.index("## Failures")
        < report.index("## Compared with the last successful run")
        < report.index("## Timeline")
    )


# --------------------------------------------------------------------------------------------------
# Small pieces: the title, byte counts, table cells.


def test_report_title_says_the_outcome_first() -> None:
    at = datetime(2026, 3, 2, 6, 5, 59, tzinfo=UTC)
    assert (
        report_title(target="dev", project="shop", success=True, run_name="brave-fox", at=at)
        == "dbt run succeeded: `shop` on target `dev` (brave-fox, 2026-03-02 06:05 UTC)"
    )
    assert report_title(target="prod", project="shop", success=False, run_name="x", at=at).startswith(
        "dbt run FAILED: `shop` on target `prod`"
    )


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * 2**20, "5.0 MiB"),
        (2**30, "1.0 GiB"),
        (2**40, "1.0 TiB"),
        (2**50, "1024.0 TiB"),  # no unit past TiB
    ],
)
def test_bytes_read_in_binary_units(count: int, text: str) -> None:
    assert run_report._bytes(count) == text


def test_cell_is_one_line_with_pipes_escaped() -> None:
    """A cell never breaks the markdown table it is in: newlines and runs of blanks become one space."""
    assert run_report._cell("Database Error\n  relation | x\r\n\tmissing ") == r"Database Error relation \| x missing"
    assert run_report._cell(None) == ""


def test_cell_cuts_long_text_with_an_ellipsis() -> None:
    assert run_report._cell("y" * 300) == "y" * 300
    assert run_report._cell("y" * 301) == "y" * 299 + "…"
    assert len(run_report._cell("z" * 5000, limit=40)) == 40


# --------------------------------------------------------------------------------------------------
# Files.


def test_a_run_that_built_and_tested_nothing_has_no_timeline(tmp_path: Path) -> None:
    """A compared run with nothing to build checked its sources' freshness and stopped: the freshness table says
    what it found, a chart of three queries would say nothing more (and cost the run half a second)."""
    freshness = command("dbt source freshness --target dev", node("source.shop.orders", "pass"))
    steps = (
        StepReport("parse", command("dbt parse --target dev")),
        StepReport("source-freshness", freshness, judged=False),
        StepReport("run", None, needless=True),
    )
    assert render_timeline(steps) is None
    report = render_markdown(title="t", steps=steps, timeline=None, timeline_path=TIMELINE_PATH)
    assert "## Timeline\n\nNo node was built or tested: nothing to draw." in report
    assert "Saved as" not in report
    write_report(tmp_path, report, None, node_table(steps))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["nodes.json", "report.md"]


def test_a_run_with_no_node_totals_none_without_an_empty_field() -> None:
    report = markdown((StepReport("parse", command("dbt parse --target dev")),))
    assert report.splitlines()[2] == "**0 nodes** · node time 0.0 s"
    one = markdown((StepReport("seed", command("dbt seed --select raw_stores", SEEDS[1])),))
    assert one.splitlines()[2] == "**1 node** · success: 1 · node time 0.3 s"


def test_the_history_is_about_what_the_node_steps_built_and_tested() -> None:
    """Source freshness checks come before the node steps: they are in no critical path, and a run that only
    checked them built nothing to compare (the last good state's results hold node steps only)."""
    checked = command("dbt source freshness", node("source.shop.orders", "pass"))
    freshness = StepReport("source-freshness", checked, judged=False)
    assert built_and_tested((PARSE, freshness)) == []
    retried = node("model.shop.revenue", "success", seconds=0.7)
    retry = StepReport("run", command("dbt retry --target dev", retried))
    nodes = built_and_tested((PARSE, freshness, *FAILED_RUN, retry))
    assert [node.unique_id for node in nodes] == [node.unique_id for node in (*SEEDS, *MODELS)]
    assert nodes[3] is retried  # as its last step reported it
    critical = CriticalPath((), 0.0)
    assert "**Critical path**: none, no node was built or tested." in history_section([], critical, None)
    one = CriticalPath(("model.shop.orders",), 2.0)
    assert "**Critical path: 2.0 s**, 1 node, each built on the one before" in history_section(NODES, one, None)[3]


def test_run_directory_is_beside_the_targets_dbt_artifacts(tmp_path: Path) -> None:
    assert run_directory(tmp_path, "prod", "brave-fox") == tmp_path / "target" / "prod" / "runs" / "brave-fox"


def test_write_report_saves_report_timeline_and_node_table(tmp_path: Path) -> None:
    directory = tmp_path / "target" / "dev" / "runs" / "r"  # made if missing
    table = node_table(FAILED_RUN)
    svg = "<svg>a timeline</svg>"
    write_report(directory, "# report\n", svg, table)
    assert (directory / "report.md").read_text(encoding="utf-8") == "# report\n"
    assert (directory / "timeline.svg").read_text(encoding="utf-8") == svg
    assert json.loads((directory / "nodes.json").read_text(encoding="utf-8")) == table


def dbt_target(project: Path, target: str, *files: str) -> Path:
    """The target's folder as dbt left it after a command: the named files, each holding its own name."""
    path = project / "target" / target
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        (path / name).write_text(f"{name} of this step")
    return path


def test_each_step_keeps_its_run_results(tmp_path: Path) -> None:
    """The step's run_results.json is copied under the step's name (the next step overwrites dbt's own)."""
    directory = run_directory(tmp_path, "dev", "r")
    dbt_target(tmp_path, "dev", "run_results.json", "catalog.json", *DOCS_FILES)
    save_step_artifacts(directory, "run", tmp_path / "target" / "dev", runs_nodes=True)
    assert (directory / "run.run_results.json").read_text() == "run_results.json of this step"
    assert not (directory / "docs").exists(), "only docs generate saves the docs"


def test_a_step_without_run_results_saves_none(tmp_path: Path) -> None:
    directory = run_directory(tmp_path, "dev", "r")
    dbt_target(tmp_path, "dev")
    save_step_artifacts(directory, "run", tmp_path / "target" / "dev", runs_nodes=True)
    assert list(directory.iterdir()) == []


def test_a_step_without_nodes_does_not_take_the_results_of_the_step_before(tmp_path: Path) -> None:
    """deps, parse and docs generate write no run_results.json: the one in the target is an earlier step's."""
    directory = run_directory(tmp_path, "dev", "r")
    dbt_target(tmp_path, "dev", "run_results.json")
    save_step_artifacts(directory, "deps", tmp_path / "target" / "dev", runs_nodes=False)
    assert list(directory.iterdir()) == []


def test_docs_generate_saves_the_docs_site(tmp_path: Path) -> None:
    """After docs generate: index.html, catalog.json and manifest.json in docs/, which the report then names."""
    directory = run_directory(tmp_path, "dev", "r")
    dbt_target(tmp_path, "dev", "run_results.json", *DOCS_FILES)
    save_step_artifacts(directory, "docs-generate", tmp_path / "target" / "dev", runs_nodes=False)
    assert sorted(path.name for path in (directory / "docs").iterdir()) == sorted(DOCS_FILES)
    assert (directory / "docs" / "catalog.json").read_text() == "catalog.json of this step"
    assert "## Docs" in markdown(timeline_path=directory / "timeline.svg")


def test_docs_generate_without_a_catalog_saves_no_docs(tmp_path: Path) -> None:
    directory = run_directory(tmp_path, "dev", "r")
    dbt_target(tmp_path, "dev", "manifest.json")
    save_step_artifacts(directory, "docs-generate", tmp_path / "target" / "dev", runs_nodes=False)
    assert not (directory / "docs").exists()


# --------------------------------------------------------------------------------------------------
# Publishing, against the session's real Prefect server.


@flow(name="unit-test-run-report")
def publishing_flow(project_dir: str, target: str, previous: str) -> tuple[Path, UUID]:
    """Publish the report of FAILED_RUN (after its parse step) from a flow run, as the pipeline's flow does."""
    project = DbtProject(path=Path(project_dir), name="shop", profile="shop", has_packages=False)
    directory = publish_report(
        project=project, target=target, run_name="brave-fox", steps=(PARSE, *FAILED_RUN), previous=Path(previous)
    )
    context = FlowRunContext.get()
    assert context is not None
    assert context.flow_run is not None
    return directory, context.flow_run.id


def test_publish_report_saves_the_files_and_publishes_the_artifacts(tmp_path: Path, prefect_api: str) -> None:
    """The report and the node table as artifacts of the flow run, keyed by target; on disk the report, timeline,
    nodes and the summary the alert reads, which links to the report artifact."""
    target = f"unit-{uuid4().hex[:12]}"  # artifact keys of its own on the shared server
    previous = last_good_state(
        tmp_path / "state", {"model.shop.orders": ("success", 0.5), "model.shop.revenue": ("success", 1.0)}
    )
    with prefect_client(prefect_api) as client:  # its API settings hold for the flow run too
        directory, flow_run_id = publishing_flow(str(tmp_path), target, str(previous))
        EventsWorker.drain_all(timeout=30)  # the artifacts' events, sent while this server runs
        this_run = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        artifacts = {
            artifact.key: artifact
            for artifact in client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=target)), flow_run_filter=this_run
            )
        }
    assert set(artifacts) == {f"dbt-run-report-{target}", f"dbt-nodes-{target}"}
    report, table = artifacts[f"dbt-run-report-{target}"], artifacts[f"dbt-nodes-{target}"]
    assert directory == run_directory(tmp_path, target, "brave-fox")
    markdown_file = (directory / "report.md").read_text(encoding="utf-8")
    assert report.type == "markdown"
    assert report.data == markdown_file
    assert markdown_file.startswith(f"# dbt run FAILED: `shop` on target `{target}` (brave-fox, ")
    assert table.type == "table"
    assert json.loads(str(table.data)) == json.loads((directory / "nodes.json").read_text(encoding="utf-8"))
    assert json.loads((directory / "nodes.json").read_text(encoding="utf-8")) == node_table(FAILED_RUN)
    lineage = run_lineage((PARSE, *FAILED_RUN))
    critical = CriticalPath(("seed.shop.raw_orders", "model.shop.orders", "model.shop.revenue"), 4.0)
    saved = (directory / "timeline.svg").read_text(encoding="utf-8")
    assert saved == render_timeline(FAILED_RUN, lineage=lineage, critical=critical)
    assert "Critical path (outlined) 4.0 s, 3 nodes: raw_orders → orders → revenue" in texts(saved)
    assert len(markdown_file.encode()) < 100_000
    assert "**1 regression** (at least 2x and 1 s slower than then):" in markdown_file
    assert "**1 new failure** (passed in the last successful run):\n\n- `model.shop.revenue` **error**" in markdown_file
    assert "`raw_orders` → `orders` → `revenue`" in markdown_file
    summary = RunSummary.read(directory)
    assert summary is not None
    assert summary.report_url is not None
    assert summary.report_url.endswith(f"artifacts/artifact/{report.id}")
    assert summary.report_path == str(directory / "report.md")
    assert [(failed.unique_id, failed.status) for failed in summary.failed] == [("model.shop.revenue", "error")]
