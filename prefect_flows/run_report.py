"""The run report: what a user reads instead of the logs, as a Prefect artifact and on disk.

For every run: status and totals, each step, every failure with its message (failing tests with
their count of failing rows), every node with its status, duration, rows and message, and a
timeline of node durations per dbt thread (SVG). The report, the timeline and each step's
run_results.json are saved in `<project>/target/<target>/runs/<flow run>/`, beside dbt's artifacts.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.settings import PREFECT_UI_URL

from dbt_pipeline.dbt_invocation import DbtCommandResult
from dbt_pipeline.dbt_project import DbtProject
from dbt_pipeline.node_status import NodeOutcome, NodeStatus, outcome_of
from dbt_pipeline.run_summary import RunSummary
from prefect_flows.last_good_state import NodeReuse

# Colours of the timeline bars, by dbt status.
_OUTCOME_COLOURS = {NodeOutcome.PASSED: "#2e9e5b", NodeOutcome.FAILED: "#d93025", NodeOutcome.SKIPPED: "#9aa0a6"}
_WARNING_COLOUR = "#d9a400"
_LANE_HEIGHT, _BAR_HEIGHT, _LABEL_WIDTH, _CHART_WIDTH = 22, 16, 150, 900


@dataclass(frozen=True)
class StepReport:
    """One step of the run as the report shows it: its last attempt's result (if it ran)."""

    name: str
    result: DbtCommandResult | None


def run_directory(project_path: Path, target: str, run_name: str) -> Path:
    """Where a run's report, timeline and per-step run results are kept."""
    return project_path / "target" / target / "runs" / run_name


DOCS_FILES = ("index.html", "catalog.json", "manifest.json")


def save_step_artifacts(directory: Path, step: str, target_path: Path) -> None:
    """Keep the step's run_results.json from dbt's `target_path` (the next step would overwrite it)
    and, after docs generate, the docs site of this run (`docs/`, servable as static files)."""
    directory.mkdir(parents=True, exist_ok=True)
    if (target_path / "run_results.json").is_file():
        shutil.copyfile(target_path / "run_results.json", directory / f"{step}.run_results.json")
    if step == "docs-generate" and (target_path / "catalog.json").is_file():
        (directory / "docs").mkdir(exist_ok=True)
        for name in DOCS_FILES:
            shutil.copyfile(target_path / name, directory / "docs" / name)


def render_markdown(
    *,
    title: str,
    steps: Sequence[StepReport],
    timeline: str,
    timeline_path: Path,
    reuse: Sequence[NodeReuse] = (),
    nodes_url: str | None = None,
) -> str:
    """The report as markdown (Prefect renders markdown artifacts)."""
    nodes = [node for step in steps if step.result for node in step.result.nodes]
    failed = [node for node in nodes if node.failed]
    counts = Counter(node.status for node in nodes)
    lines = [f"# {title}", ""]
    lines.append(
        f"**{len(nodes)} nodes** · "
        + " · ".join(f"{status}: {count}" for status, count in sorted(counts.items()))
        + f" · node time {sum(node.execution_time for node in nodes):.1f} s"
    )
    billed = [node.adapter_response["bytes_billed"] for node in nodes if "bytes_billed" in node.adapter_response]
    if billed:
        processed = sum(node.adapter_response.get("bytes_processed") or 0 for node in nodes)
        lines.append(f"\n**BigQuery**: {_bytes(processed)} processed · {_bytes(sum(billed))} billed")
    lines += ["", "## Steps", "", "| step | command | status | nodes |", "|---|---|---|---|"]
    for step in steps:
        if step.result is None:
            lines.append(f"| {step.name} | | not run | |")
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
    lines += ["", "## Timeline", "", f"![timeline of node durations per thread]({_data_uri(timeline)})", ""]
    lines.append(f"Saved as `{timeline_path}`.")
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


def render_timeline(steps: Sequence[StepReport]) -> str:
    """An SVG timeline: one lane per step and dbt thread, one bar per node, coloured by status."""
    lane_of = {
        node.unique_id: f"{step.name} · {node.thread.removesuffix(' (worker)') or 'main'}"
        for step in steps
        if step.result
        for node in step.result.nodes
    }
    timed = [
        node for step in steps if step.result for node in step.result.nodes if node.started_at and node.completed_at
    ]
    if not timed:
        return _svg(_LABEL_WIDTH + _CHART_WIDTH, 40, ['<text x="10" y="25">No node ran.</text>'])
    start = min(node.started_at for node in timed if node.started_at)
    end = max(node.completed_at for node in timed if node.completed_at)
    span = max((end - start).total_seconds(), 1e-3)
    lanes = list(dict.fromkeys(lane_of[node.unique_id] for node in timed))
    scale = _CHART_WIDTH / span
    parts = []
    for index, lane in enumerate(lanes):
        y = 30 + index * _LANE_HEIGHT
        parts.append(f'<text x="4" y="{y + 12}" font-size="11">{html.escape(lane)}</text>')
    for node in timed:
        if node.started_at is None or node.completed_at is None:
            continue
        x = _LABEL_WIDTH + (node.started_at - start).total_seconds() * scale
        width = max((node.completed_at - node.started_at).total_seconds() * scale, 1.0)
        y = 30 + lanes.index(lane_of[node.unique_id]) * _LANE_HEIGHT
        colour = _WARNING_COLOUR if node.status == NodeStatus.Warn else _OUTCOME_COLOURS[outcome_of(node.status)]
        tooltip = f"{node.unique_id} ({node.status}) {node.execution_time:.2f} s"
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{_BAR_HEIGHT}" fill="{colour}">'
            f"<title>{html.escape(tooltip)}</title></rect>"
        )
    parts += _axis(span, 30 + len(lanes) * _LANE_HEIGHT)
    return _svg(_LABEL_WIDTH + _CHART_WIDTH + 20, 60 + len(lanes) * _LANE_HEIGHT, parts)


def write_report(directory: Path, markdown: str, timeline: str, table: list[dict[str, object]]) -> None:
    """Save the report, its timeline and the node table beside the run's dbt artifacts."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.md").write_text(markdown, encoding="utf-8")
    (directory / "timeline.svg").write_text(timeline, encoding="utf-8")
    (directory / "nodes.json").write_text(json.dumps(table, indent=1), encoding="utf-8")


def _axis(span: float, y: int) -> list[str]:
    ticks = 5
    parts = [f'<line x1="{_LABEL_WIDTH}" y1="{y}" x2="{_LABEL_WIDTH + _CHART_WIDTH}" y2="{y}" stroke="#555"/>']
    for tick in range(ticks + 1):
        x = _LABEL_WIDTH + _CHART_WIDTH * tick / ticks
        parts.append(
            f'<text x="{x:.0f}" y="{y + 16}" font-size="10" text-anchor="middle">{span * tick / ticks:.1f}s</text>'
        )
    return parts


def _svg(width: float, height: float, parts: list[str]) -> str:
    body = "\n".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>\n'
        f'<text x="4" y="16" font-size="12" font-weight="bold">dbt nodes per thread</text>\n{body}\n</svg>\n'
    )


def _data_uri(svg: str) -> str:
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
) -> Path:
    """Save the report on disk, publish it as the Prefect artifact `dbt-run-report-<target>`, and
    save the run's summary (with the report's link) for the alert."""
    directory = run_directory(project.path, target, run_name)
    success = all(step.result is not None and step.result.success for step in steps)
    timeline = render_timeline(steps)
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
