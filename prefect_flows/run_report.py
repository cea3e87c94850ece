"""The run report: what a user reads instead of the logs, as a Prefect artifact and on disk.

For every run: status and totals, each step, every failure with its message (failing tests with
their count of failing rows), the run compared with the target's last successful run (regressions,
new failures) and its critical path (dbt_pipeline.run_history), a timeline of the nodes
(prefect_flows.timeline, an SVG image embedded in the markdown), and every node with its status,
duration, rows and message. The report, the timeline and each step's run_results.json are saved in
`<project>/target/<target>/runs/<flow run>/`, beside dbt's artifacts.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.settings import PREFECT_UI_URL

from dbt_pipeline.dbt_invocation import DbtCommandResult, NodeResult
from dbt_pipeline.dbt_project import DbtProject, reports_folder
from dbt_pipeline.node_status import NodeOutcome, NodeStatus, outcome_of
from dbt_pipeline.run_history import (
    REGRESSION_FACTOR,
    REGRESSION_MIN_SECONDS,
    Comparison,
    CriticalPath,
    Lineage,
    PreviousRun,
    PreviousRunUnreadableError,
    compare,
    critical_path,
    executed_durations,
    node_name,
    nodes_text,
    read_previous_run,
    seconds_text,
)
from dbt_pipeline.run_summary import RunSummary
from prefect_flows.last_good_state import NodeReuse

# The regressions the report lists, slowest-down first; the rest are counted.
MAX_REGRESSIONS_LISTED = 30


@dataclass(frozen=True)
class StepReport:
    """One step of the run as the report shows it: its last attempt's result (if it ran), whether its failed
    nodes fail the run (`judged`; not source freshness, whose verdict is the environment's on_stale_source),
    and whether it was left out for having nothing to do (`needless`: docs after a compared run that built
    nothing), which, unlike a step left out after a failure, does not fail the run."""

    name: str
    result: DbtCommandResult | None
    judged: bool = True
    needless: bool = False

    @property
    def succeeded(self) -> bool:
        return self.needless or (self.result is not None and self.result.success)


def run_directory(project_path: Path, target: str, run_name: str) -> Path:
    """Where a run's report, timeline and per-step run results are kept."""
    return reports_folder(project_path, target) / run_name


DOCS_FILES = ("index.html", "catalog.json", "manifest.json")


def save_step_artifacts(directory: Path, step: str, target_path: Path, *, runs_nodes: bool) -> None:
    """Keep the step's run_results.json from dbt's `target_path` (the next step would overwrite it)
    and, after docs generate, the docs site of this run (`docs/`, servable as static files).

    Only a step that `runs_nodes` writes a run_results.json: after another, the file is an earlier step's.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if runs_nodes and (target_path / "run_results.json").is_file():
        shutil.copyfile(target_path / "run_results.json", directory / f"{step}.run_results.json")
    if step == "docs-generate" and (target_path / "catalog.json").is_file():
        (directory / "docs").mkdir(exist_ok=True)
        for name in DOCS_FILES:
            shutil.copyfile(target_path / name, directory / "docs" / name)


def render_markdown(
    *,
    title: str,
    steps: Sequence[StepReport],
    timeline: str | None,
    timeline_path: Path,
    reuse: Sequence[NodeReuse] = (),
    nodes_url: str | None = None,
    history: Sequence[str] = (),
) -> str:
    """The report as markdown (Prefect renders markdown artifacts); `history` is its comparison with the last
    successful run and its critical path (`history_section`)."""
    nodes = [node for step in steps if step.result and step.judged for node in step.result.nodes]
    failed = [node for node in nodes if node.failed]
    counts = Counter(node.status for node in nodes)
    lines = [f"# {title}", ""]
    totals = [f"**{nodes_text(len(nodes))}**", *(f"{status}: {count}" for status, count in sorted(counts.items()))]
    lines.append(" · ".join([*totals, f"node time {sum(node.execution_time for node in nodes):.1f} s"]))
    billed = [node.adapter_response["bytes_billed"] for node in nodes if "bytes_billed" in node.adapter_response]
    if billed:
        processed = sum(node.adapter_response.get("bytes_processed") or 0 for node in nodes)
        lines.append(f"\n**BigQuery**: {_bytes(processed)} processed · {_bytes(sum(billed))} billed")
    lines += ["", "## Steps", "", "| step | command | status | nodes |", "|---|---|---|---|"]
    for step in steps:
        if step.result is None:
            lines.append(f"| {step.name} | | {'not needed' if step.needless else 'not run'} | |")
        else:
            status = "success" if step.result.success else "**failed**"
            lines.append(f"| {step.name} | `{step.result.command}` | {status} | {len(step.result.nodes)} |")
    if failed or any(step.result and step.result.error for step in steps):
        lines += ["", "## Failures", ""]
        for step in steps:
            if step.result and step.result.error:
                lines.append(f"- step **{step.name}**: {_cell(step.result.error)}")
        for node in failed:
            rows = f" ({node.failures} failing rows)" if node.failures else ""
            lines.append(f"- `{node.unique_id}` **{node.status}**{rows}: {_cell(node.message)}")
    lines += _freshness_section(steps)
    lines += history
    lines += _reuse_section(reuse)
    docs = timeline_path.parent / "docs" / "index.html"
    if docs.is_file():
        lines += [
            "",
            "## Docs",
            "",
            f"dbt docs of this run: `{docs}`",
            "",
            f"Serve them: `{serve_docs_command(docs.parent)}`",
        ]
    lines += ["", "## Timeline", ""]
    if timeline is None:
        lines.append("No node was built or tested: nothing to draw.")
    else:
        image = f"![timeline of the run's nodes by kind, the critical path outlined]({_data_uri(timeline)})"
        lines += [image, "", f"Saved as `{timeline_path}`."]
    table = f"[the node table]({nodes_url})" if nodes_url else "the node table artifact of this flow run"
    lines += ["", "## Nodes", "", f"Every node, failures first, then slowest: {table}."]
    return "\n".join(lines) + "\n"


def _reuse_section(reuse: Sequence[NodeReuse]) -> list[str]:
    """For a run compared with a last good state: every model, seed and snapshot, built or reused, and why."""
    if not reuse:
        return []
    built = sum(item.built for item in reuse)
    lines = [
        "",
        "## Built and reused",
        "",
        f"**{built} built**, {len(reuse) - built} reused (models, seeds, snapshots).",
        "",
    ]
    lines += ["| node | | why |", "|---|---|---|"]
    lines += [
        f"| `{item.unique_id.split('.', 2)[-1]}` | {'**built**' if item.built else 'reused'} | {item.reason} |"
        for item in reuse
    ]
    return lines


# The table's order: what failed, then what did not run because of it, then the rest; slowest first in each.
_TABLE_ORDER = {NodeOutcome.FAILED: 0, NodeOutcome.SKIPPED: 1, NodeOutcome.PASSED: 2}


# What a source's freshness status means (dbt's words: pass, warn, error, runtime error).
_FRESHNESS_WORDS: dict[str, str] = {
    NodeStatus.Pass: "fresh",
    NodeStatus.Warn: "past warn_after",
    NodeStatus.Error: "past error_after",
    NodeStatus.RuntimeErr: "not checked",
}


def _freshness_section(steps: Sequence[StepReport]) -> list[str]:
    """What the source freshness step found, apart from the failures: its verdict is the environment's
    `on_stale_source`, and a source it could not check (a table not loaded yet) fails nothing."""
    sources = [node for step in steps if step.result and not step.judged for node in step.result.nodes]
    if not sources:
        return []
    counts = Counter(_FRESHNESS_WORDS.get(node.status, node.status) for node in sources)
    lines = ["", "## Source freshness", "", " · ".join(f"{word}: {count}" for word, count in sorted(counts.items()))]
    unchecked = [node for node in sources if node.status == NodeStatus.RuntimeErr]
    if unchecked:
        names = ", ".join(f"`{node.name}`" for node in unchecked)
        lines += ["", f"Not checked: {names} ({_cell(unchecked[0].message, limit=200)})."]
    return lines


def node_table(steps: Sequence[StepReport]) -> list[dict[str, object]]:
    """One row per node, answering "what failed, and what was slow": failures first, then skipped nodes, then
    the rest, slowest first in each. Status and duration lead (long test names would push them off a screen);
    the bytes columns are there only when the adapter reported them (BigQuery)."""
    nodes = [(step.name, node) for step in steps if step.result for node in step.result.nodes]
    billed = any(
        "bytes_processed" in node.adapter_response or "bytes_billed" in node.adapter_response for _, node in nodes
    )
    rows = []
    for step, node in sorted(
        nodes, key=lambda item: (_TABLE_ORDER[outcome_of(item[1].status)], -item[1].execution_time)
    ):
        row: dict[str, object] = {
            "status": node.status,
            "duration_s": round(node.execution_time, 3),
            "node": node.name,
            "type": node.resource_type,
            "step": step,
            "rows_affected": node.rows_affected,
            "failures": node.failures,
        }
        if billed:
            row["bytes_processed"] = node.adapter_response.get("bytes_processed")
            row["bytes_billed"] = node.adapter_response.get("bytes_billed")
        row["message"] = _cell(node.message, limit=200)
        rows.append(row)
    return rows


def serve_docs_command(docs_dir: Path) -> str:
    """The one command that serves a run's dbt docs on http://127.0.0.1:8080."""
    return f"uv run python -m http.server 8080 --bind 127.0.0.1 --directory {docs_dir}"


def render_timeline(
    steps: Sequence[StepReport], *, lineage: Lineage | None = None, critical: CriticalPath | None = None
) -> str | None:
    """The run's timeline as SVG (prefect_flows.timeline): nodes by kind, the critical path outlined.

    None for a run that built and tested no node (a compared run with nothing to build, or one that failed
    before its first node): source freshness alone is a table, not a chart, and drawing it cost such a run
    over a second, a fifth of its time. Imported here: altair and vl-convert cost 0.2 s more."""
    if not built_and_tested(steps):
        return None
    from prefect_flows import timeline as timeline_chart

    return timeline_chart.render_timeline(
        [timeline_chart.StepNodes(step.name, step.result.nodes, step.judged) for step in steps if step.result],
        lineage=lineage,
        critical=critical,
    )


def run_lineage(steps: Sequence[StepReport]) -> Lineage | None:
    """dbt's parent links of the run's project, from the manifest its parse step handed over (None if it did not)."""
    manifest = next((step.result.manifest for step in steps if step.result and step.result.manifest is not None), None)
    return Lineage.of_manifest(manifest) if manifest is not None else None


def built_and_tested(steps: Sequence[StepReport]) -> list[NodeResult]:
    """Each node the run's node steps built or tested, once, as its last step reported it: what the critical path
    and the comparison with the last successful run are about (source freshness, a check before them, is not)."""
    nodes = {node.unique_id: node for step in steps if step.judged and step.result for node in step.result.nodes}
    return list(nodes.values())


def history_section(nodes: Sequence[NodeResult], critical: CriticalPath | None, previous: Path | None) -> list[str]:
    """The report's section on what set the run's length and what changed since the target's last successful
    run (`previous`: the folder of its last good state, with its run_results.json and manifest.json)."""
    lines = ["", "## Compared with the last successful run", ""]
    before: PreviousRun | None = None
    if previous is None:
        reading = "No previous successful run of this target to compare with."
    else:
        try:
            before = read_previous_run(previous)
            reading = f"Last successful run: {_when(before.generated_at)}, kept in `{previous}`."
        except PreviousRunUnreadableError as error:
            reading = f"The last successful run could not be read, so nothing is compared: {error}."
    lines += [_critical_path_line(critical, before), "", reading]
    if before is not None and nodes:
        lines += _comparison_lines(compare(nodes, before), nodes)
    return lines


def _critical_path_line(critical: CriticalPath | None, before: PreviousRun | None) -> str:
    if critical is None:
        return "**Critical path**: unknown, the run has no manifest (its parse step did not succeed)."
    if not critical.nodes:
        return "**Critical path**: none, no node was built or tested."
    then = ""
    if before is not None and before.critical_path is not None and before.critical_path.nodes:
        then = f" (last successful run: {seconds_text(before.critical_path.seconds)})"
    chain = " → ".join(f"`{node_name(unique_id)}`" for unique_id in critical.nodes)
    return (
        f"**Critical path: {seconds_text(critical.seconds)}**{then}, {nodes_text(len(critical.nodes))}, each built on "
        f"the one before (the run cannot take less, whatever its threads): {chain}"
    )


def _comparison_lines(comparison: Comparison, nodes: Sequence[NodeResult]) -> list[str]:
    lines = [""]
    threshold = f"at least {REGRESSION_FACTOR:g}x and {REGRESSION_MIN_SECONDS:g} s slower than then"
    if comparison.regressions:
        count = len(comparison.regressions)
        lines += [f"**{count} regression{'s' if count > 1 else ''}** ({threshold}):", ""]
        lines += ["| node | now | then | slower |", "|---|---|---|---|"]
        for item in comparison.regressions[:MAX_REGRESSIONS_LISTED]:
            lines.append(
                f"| `{item.unique_id}` | {seconds_text(item.now)} | {seconds_text(item.before)} | {item.factor:.1f}x |"
            )
        if count > MAX_REGRESSIONS_LISTED:
            lines.append(f"\nand {count - MAX_REGRESSIONS_LISTED} more.")
    else:
        lines.append(f"No regression: no node {threshold}.")
    lines.append("")
    if comparison.new_failures:
        count = len(comparison.new_failures)
        lines += [f"**{count} new failure{'s' if count > 1 else ''}** (passed in the last successful run):", ""]
        lines += [f"- `{node.unique_id}` **{node.status}**" for node in comparison.new_failures]
    elif any(node.failed for node in nodes):
        lines.append("No new failure: every node that failed now also failed or did not run then.")
    else:
        lines.append("No new failure.")
    return lines


def _when(generated_at: str | None) -> str:
    """dbt's `generated_at` as a user reads it."""
    if generated_at is None:
        return "at an unknown time"
    try:
        moment = datetime.fromisoformat(generated_at)
    except ValueError:
        return generated_at
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment.tzinfo else f"{moment:%Y-%m-%d %H:%M} UTC"


def write_report(directory: Path, markdown: str, timeline: str | None, table: list[dict[str, object]]) -> None:
    """Save the report, its timeline (if the run has one) and the node table beside the run's dbt artifacts."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.md").write_text(markdown, encoding="utf-8")
    if timeline is not None:
        (directory / "timeline.svg").write_text(timeline, encoding="utf-8")
    (directory / "nodes.json").write_text(json.dumps(table, indent=1), encoding="utf-8")


def _data_uri(svg: str) -> str:
    """The SVG as a data URI, so the markdown artifact carries its image (it cannot link to a file on the machine
    that ran the flow)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def _cell(text: str | None, limit: int = 300) -> str:
    """One table cell: a single line, pipes escaped, long messages cut."""
    flat = " ".join((text or "").split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def ui_url(path: str) -> str:
    """A page of the Prefect UI (Cloud or self-hosted)."""
    ui = PREFECT_UI_URL.value() or "http://127.0.0.1:4200"
    return f"{ui.rstrip('/')}/{path}"


def publish_report(
    *,
    project: DbtProject,
    target: str,
    run_name: str,
    steps: Sequence[StepReport],
    secrets: Iterable[str] = (),
    reuse: Sequence[NodeReuse] = (),
    previous: Path | None = None,
) -> Path:
    """Save the report on disk, publish it as the Prefect artifact `dbt-run-report-<target>`, and
    save the run's summary (with the report's link) for the alert.

    `previous` is the folder of the target's last good state (its run_results.json and manifest.json):
    the report compares the run with it; None says there is no previous successful run to compare with.
    """
    directory = run_directory(project.path, target, run_name)
    success = all(step.succeeded for step in steps)
    lineage = run_lineage(steps)
    nodes = built_and_tested(steps)
    critical = critical_path(executed_durations(nodes), lineage) if lineage is not None else None
    timeline = render_timeline(steps, lineage=lineage, critical=critical)
    title = report_title(target=target, project=project.name, success=success, run_name=run_name, at=datetime.now(UTC))
    table = node_table(steps)
    table_id = create_table_artifact(
        table=table, key=f"dbt-nodes-{target}", description=f"dbt nodes of the run, target {target}"
    )
    markdown = render_markdown(
        title=title,
        steps=steps,
        timeline=timeline,
        timeline_path=directory / "timeline.svg",
        reuse=reuse,
        nodes_url=ui_url(f"artifacts/artifact/{table_id}"),
        history=history_section(nodes, critical, previous),
    )
    write_report(directory, markdown, timeline, table)
    report_id = create_markdown_artifact(
        markdown=markdown, key=f"dbt-run-report-{target}", description=f"dbt run report, target {target}"
    )
    RunSummary.of(
        target,
        [(step.name, step.result) for step in steps],
        secrets=secrets,
        report_url=ui_url(f"artifacts/artifact/{report_id}"),
        report_path=directory / "report.md",
    ).write(directory)
    return directory


def report_title(*, target: str, project: str, success: bool, run_name: str, at: datetime) -> str:
    """The report's heading: outcome first."""
    outcome = "succeeded" if success else "FAILED"
    return f"dbt run {outcome}: `{project}` on target `{target}` ({run_name}, {at:%Y-%m-%d %H:%M} UTC)"
