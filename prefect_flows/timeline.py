"""The run report's timeline: when each dbt node ran, what failed, and the chain that set the run's length.

A chart a user reads at 30 nodes and at 1,000:

- **Rows a user names**: lanes by kind of node (sources, seeds, snapshots, models, tests), not dbt's thread
  names. A node that matters has a row of its own, named on the axis: on a small project every model,
  seed and snapshot (with its tests, as thin bars, in its row); on a large one every failed and skipped
  node, the critical path and the slowest. Every other node is a bar in its lane's unlabelled rows,
  packed so that bars never overlap.
- **The critical path** (dbt_pipeline.run_history) is outlined in black and joined by a line, its total
  in the subtitle: the nodes to make faster for the run to be shorter.
- A time axis in seconds since the first node started, one vertical rule where each step began, and a
  legend of the status colours.

Why Vega-Lite (through `altair`) rendered by `vl-convert-python`, rather than SVG written by hand: a
declarative, well-kept library lays out axes, ticks, legends, labels and titles and sizes text for us,
which hand-built SVG did badly (a "barcode" of 264 unlabelled bars); vl-convert renders the chart to a
static SVG in-process (no browser, no network: data is inline and text uses the viewer's own sans-serif
font, no web font). The report embeds that SVG in its markdown artifact as a `data:image/svg+xml` image,
as it always has (an artifact cannot link to a file on the machine that ran the flow). Marks are drawn
without ARIA descriptions (`aria: false`): on 1,000 nodes they more than double the SVG (127 KB to
307 KB), and an image in markdown exposes none of them anyway.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import altair as alt
import vl_convert

from dbt_pipeline.dbt_invocation import NodeResult
from dbt_pipeline.node_status import NodeOutcome, NodeStatus, outcome_of
from dbt_pipeline.run_history import CriticalPath, Lineage, node_name, nodes_text, seconds_text

# The status colours (the legend's order).
STATUS_COLOURS = {"passed": "#2e9e5b", "warned": "#d9a400", "failed": "#d93025", "skipped": "#9aa0a6"}
CRITICAL_COLOUR = "#111111"
# Rows of their own beyond which a project counts as large: then only the nodes that matter get one.
MAX_NAMED_ROWS = 60
# On a large project, at least this many of the slowest nodes are named (room permitting).
SLOWEST_NAMED = 15
# Lanes, in the order dbt runs them; a kind of node not listed goes to "other".
LANES = {"source": "sources", "seed": "seeds", "snapshot": "snapshots", "model": "models", "test": "tests"}
LANES_ORDER = ("sources", "seeds", "snapshots", "models", "tests", "other")
_BUILT = ("seed", "snapshot", "model")
_ROW_PIXELS, _BAR_PIXELS, _TEST_BAR_PIXELS, _CHART_WIDTH, _LABEL_LIMIT = 16, 11, 5, 720, 260
_FONT = "Helvetica, Arial, sans-serif"  # the viewer's own fonts: nothing is fetched
_KEY_SEPARATOR = "\x1f"  # lane rows' keys: the lane, this, then "header" or the row's number
_STEP_NAME_GAP = 0.07  # a step's name is written if its start is this far (share of the axis) from the last one
_MIN_BAR_PIXELS = 2  # the narrowest a bar is drawn
_CHAIN_NAMES = 6  # the critical path's names in the subtitle, at most (the report lists them all)
_NAME_CHARACTERS = 40
_LINE_CHARACTERS = 140  # a subtitle line at most (about the chart's width)


@dataclass(frozen=True)
class StepNodes:
    """One step of the run and the nodes dbt reported for it; `judged`: whether a failed node fails the run (not
    for source freshness, whose verdict is the environment's on_stale_source: drawn as a warning)."""

    name: str
    nodes: Sequence[NodeResult]
    judged: bool = True


@dataclass(frozen=True)
class _Node:
    """A node as the chart places it: its step, lane, and times in seconds since the first node started."""

    result: NodeResult
    step: str
    lane: str
    start: float | None
    end: float | None
    judged: bool = True

    @property
    def unique_id(self) -> str:
        return self.result.unique_id

    @property
    def status(self) -> str:
        """The legend's word for the node's status."""
        if self.result.status == NodeStatus.Warn or (
            not self.judged and outcome_of(self.result.status) is NodeOutcome.FAILED
        ):
            return "warned"
        return {NodeOutcome.PASSED: "passed", NodeOutcome.FAILED: "failed", NodeOutcome.SKIPPED: "skipped"}[
            outcome_of(self.result.status)
        ]


@dataclass
class _Layout:
    """Rows top to bottom (unique key, shown label), and the row each node is drawn in."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    row_of: dict[str, str] = field(default_factory=dict)
    named: set[str] = field(default_factory=set)  # nodes with a row of their own
    hidden: int = 0  # failed or skipped nodes that did not get a row of their own
    large: bool = False


def render_timeline(
    steps: Sequence[StepNodes], *, lineage: Lineage | None = None, critical: CriticalPath | None = None
) -> str:
    """The timeline as an SVG document. `lineage` puts tests in their model's row and dates skipped nodes;
    `critical` is outlined (both from dbt_pipeline.run_history; without them, neither is drawn).

    Rendered in-process by vl-convert, offline: the data is inline and no URL may be fetched.
    """
    spec = timeline_spec(steps, lineage=lineage, critical=critical)
    return vl_convert.vegalite_to_svg(spec, allowed_base_urls=[])


def timeline_spec(
    steps: Sequence[StepNodes], *, lineage: Lineage | None = None, critical: CriticalPath | None = None
) -> dict[str, Any]:
    """The Vega-Lite specification of the timeline (what `render_timeline` renders), for tests and tools."""
    nodes = _placed(steps, lineage)
    if not any(node.start is not None for node in nodes):
        empty: dict[str, Any] = _empty_chart().to_dict()
        return empty
    critical = critical or CriticalPath((), 0.0)
    chart = _chart(nodes, _layout(nodes, lineage, critical), critical, step_starts=_step_starts(nodes))
    spec: dict[str, Any] = chart.to_dict()
    return spec


def svg_to_png(svg: str, scale: float = 1.0) -> bytes:
    """A PNG of the timeline (to look at it, or attach it where SVG is not shown)."""
    return vl_convert.svg_to_png(svg, scale=scale)


# --------------------------------------------------------------------------------------------------
# Placing the nodes in time and in rows.


def _placed(steps: Sequence[StepNodes], lineage: Lineage | None) -> list[_Node]:
    """Every node once (its last report), with times relative to the first node's start; a skipped node
    (dbt gives it no timing) at the moment the failure it follows ended."""
    latest = {node.unique_id: (step, node) for step in steps for node in step.nodes}
    timed = [node for _, node in latest.values() if node.started_at and node.completed_at]
    if not timed:
        return [_Node(node, step.name, _lane(node), None, None, step.judged) for step, node in latest.values()]
    origin = min(node.started_at for node in timed if node.started_at)
    placed = [
        _Node(
            node,
            step.name,
            _lane(node),
            _seconds(node.started_at, origin),
            _seconds(node.completed_at, origin),
            step.judged,
        )
        for step, node in latest.values()
    ]
    failed_ends = {node.unique_id: node.end for node in placed if node.status == "failed" and node.end is not None}
    bounds: dict[str, tuple[float, float]] = {}
    for node in placed:
        if node.start is not None and node.end is not None:
            low, high = bounds.get(node.step, (node.start, node.end))
            bounds[node.step] = (min(low, node.start), max(high, node.end))
    return [_dated_skip(node, failed_ends, bounds, lineage) for node in placed]


def _seconds(moment: datetime | None, origin: datetime) -> float | None:
    return None if moment is None else (moment - origin).total_seconds()


def _lane(node: NodeResult) -> str:
    kind = "test" if node.resource_type == "unit_test" else node.resource_type
    return LANES.get(kind, "other")


def _dated_skip(
    node: _Node, failed_ends: Mapping[str, float], bounds: Mapping[str, tuple[float, float]], lineage: Lineage | None
) -> _Node:
    """A skipped node, placed when dbt skipped it: once the latest of its failed ancestors ended, and not before its
    own step began (a test skipped in the test step for a model that failed in the run step). Without the lineage,
    or in a step that timed no node, at the end of its step or of the run."""
    if node.status != "skipped" or node.start is not None:
        return node
    ancestors = _ancestors(node.unique_id, lineage) if lineage else set()
    causes = [failed_ends[unique_id] for unique_id in ancestors if unique_id in failed_ends]
    run_end = max((high for _, high in bounds.values()), default=0.0)
    step_start, step_end = bounds.get(node.step, (run_end, run_end))
    at = max(max(causes), step_start) if causes else step_end
    return _Node(node.result, node.step, node.lane, at, at, node.judged)


def _ancestors(unique_id: str, lineage: Lineage) -> set[str]:
    found: set[str] = set()
    todo = list(lineage.parents.get(unique_id, ()))
    while todo:
        parent = todo.pop()
        if parent not in found:
            found.add(parent)
            todo.extend(lineage.parents.get(parent, ()))
    return found


def _layout(nodes: Sequence[_Node], lineage: Lineage | None, critical: CriticalPath) -> _Layout:
    """Which nodes get a row of their own, and the rows of each lane: a header, the named rows (by start
    time), then the unlabelled rows where the other nodes are packed."""
    layout = _Layout()
    named = _named(nodes, critical, layout)
    tested = lineage.tested if lineage else {}
    by_lane: dict[str, list[_Node]] = defaultdict(list)
    for node in nodes:
        by_lane[node.lane].append(node)
    for lane in LANES_ORDER:
        members = by_lane.get(lane, [])
        if members:
            _lane_rows(lane, members, named, tested, layout)
    return layout


def _named(nodes: Sequence[_Node], critical: CriticalPath, layout: _Layout) -> set[str]:
    """The nodes with a row of their own. On a small project: every model, seed and snapshot, and every node
    that failed, was skipped or is on the critical path. On a large one, within MAX_NAMED_ROWS rows and in
    this order: the failed, the skipped (leaving room for SLOWEST_NAMED), the SLOWEST_NAMED slowest, the critical
    path, more of the skipped and of the slowest."""
    ids = {node.unique_id for node in nodes}
    failed = [node.unique_id for node in nodes if node.status == "failed"]
    skipped = [node.unique_id for node in nodes if node.status == "skipped"]
    on_path = [unique_id for unique_id in critical.nodes if unique_id in ids]
    built = [node.unique_id for node in nodes if node.result.resource_type in _BUILT]
    everything = list(dict.fromkeys([*failed, *skipped, *on_path, *built]))
    if len(everything) <= MAX_NAMED_ROWS:
        layout.named = set(everything)
        return layout.named
    layout.large = True
    slowest = [node.unique_id for node in sorted(nodes, key=lambda node: -node.result.execution_time)]
    room = max(0, MAX_NAMED_ROWS - len(failed) - SLOWEST_NAMED)  # skipped nodes leave room for the slowest
    wanted = dict.fromkeys([*failed, *skipped[:room], *slowest[:SLOWEST_NAMED], *on_path, *skipped, *slowest])
    layout.named = set(list(wanted)[:MAX_NAMED_ROWS])
    layout.hidden = sum(unique_id not in layout.named for unique_id in [*failed, *skipped])
    return layout.named


def _lane_rows(
    lane: str, members: Sequence[_Node], named: set[str], tested: Mapping[str, str], layout: _Layout
) -> None:
    """Add the lane's rows to `layout`: its header, a row per named node, then packed rows for the other nodes
    that ran (a test whose model has a row of its own is drawn in that row instead). A skipped node without a
    row of its own is not drawn: it has no duration, and the chart counts it."""
    own = sorted((node for node in members if node.unique_id in named), key=_start_order)
    rest = []
    for node in members:
        if node.unique_id in named or node.status == "skipped" or node.start is None:
            continue
        model = tested.get(node.unique_id)
        if model in named:
            layout.row_of[node.unique_id] = model
        else:
            rest.append(node)
    layout.rows.append((f"{lane}{_KEY_SEPARATOR}header", f"{lane.upper()} ({len(members)})"))
    for node in own:
        layout.rows.append((node.unique_id, node.result.name))
        layout.row_of[node.unique_id] = node.unique_id
    slots = _packed(rest)
    for index, slot in enumerate(slots):
        key = f"{lane}{_KEY_SEPARATOR}{index}"
        label = f"{len(rest)} {'other ' if own else ''}{lane}" if index == 0 else ""
        layout.rows.append((key, label))
        layout.row_of.update({node.unique_id: key for node in slot})


def _start_order(node: _Node) -> tuple[float, str]:
    return (node.start if node.start is not None else float("inf"), node.unique_id)


def _packed(nodes: Iterable[_Node]) -> list[list[_Node]]:
    """Nodes in as few rows as their overlaps allow, none overlapping another (first fit, by start time):
    at most as many rows as dbt had threads busy at once."""
    slots: list[list[_Node]] = []
    ends: list[float] = []
    for node in sorted(nodes, key=_start_order):
        assert node.start is not None
        assert node.end is not None
        free = next((index for index, end in enumerate(ends) if end <= node.start), None)
        if free is None:
            slots.append([])
            ends.append(0.0)
            free = len(slots) - 1
        slots[free].append(node)
        ends[free] = node.end
    return slots


def _step_starts(nodes: Sequence[_Node]) -> list[tuple[str, float]]:
    """When each step's first node started, in that order."""
    starts: dict[str, float] = {}
    for node in nodes:
        if node.start is not None and node.status != "skipped":
            starts[node.step] = min(starts.get(node.step, node.start), node.start)
    return sorted(starts.items(), key=lambda item: item[1])


# --------------------------------------------------------------------------------------------------
# The chart.


def _chart(
    nodes: Sequence[_Node], layout: _Layout, critical: CriticalPath, *, step_starts: Sequence[tuple[str, float]]
) -> alt.LayerChart:
    on_path = set(critical.nodes)
    span = max((node.end for node in nodes if node.end is not None), default=1.0) or 1.0
    rows = [_bar_row(node, layout, on_path, span) for node in nodes if node.unique_id in layout.row_of]
    keys = [key for key, _ in layout.rows]
    labels = dict(layout.rows)
    x = alt.X("start:Q", title="seconds since the first node started", scale=alt.Scale(domain=[0, span], nice=False))
    y = alt.Y(
        "row:N",
        sort=keys,
        scale=alt.Scale(domain=keys),
        title=None,
        axis=alt.Axis(
            labelExpr=_label_expression(labels),
            labelLimit=_LABEL_LIMIT,
            labelFontWeight=alt.ExprRef(
                expr=f"indexof(datum.value, '{_KEY_SEPARATOR}header') >= 0 ? 'bold' : 'normal'"
            ),
            ticks=False,
            domain=False,
        ),
    )
    colour = alt.Color(
        "status:N",
        scale=alt.Scale(domain=list(STATUS_COLOURS), range=list(STATUS_COLOURS.values())),
        legend=alt.Legend(title="status", orient="top", direction="horizontal", offset=30),
    )
    layers: list[alt.Chart | alt.LayerChart] = [
        _bars(rows, x, y, colour),
        _skipped_marks(rows, x, y),
        _durations(rows, y),
        *_critical_layers(rows, critical, x, y),
        *_step_rules(step_starts, span),
    ]
    chart: alt.LayerChart = (
        alt.layer(*layers)
        .properties(
            width=_CHART_WIDTH,
            height=alt.Step(_ROW_PIXELS),
            title=alt.Title(_title(nodes), subtitle=_subtitle(layout, critical), anchor="start"),
        )
        .configure(font=_FONT, aria=False)
        .configure_view(stroke=None)
        .configure_axisY(grid=False)
    )
    return chart


def _drawn_end(node: _Node, span: float) -> float | None:
    """Where a node's bar ends on the chart: its end, or further for the bar to be seen (a 0.05 s test that
    failed in a 20-minute run is a bar of less than a pixel)."""
    if node.start is None or node.end is None or node.status == "skipped":
        return node.end
    return max(node.end, node.start + span * _MIN_BAR_PIXELS / _CHART_WIDTH)


def _bar_row(node: _Node, layout: _Layout, on_path: set[str], span: float) -> dict[str, Any]:
    """One node as the chart's data: its row, times, status, and whether it is drawn thin (a test in its
    model's row), named (its duration written after it) or on the critical path."""
    own = node.unique_id in layout.named
    return {
        "row": layout.row_of[node.unique_id],
        "start": node.start,
        "end": node.end,
        "drawn_end": _drawn_end(node, span),
        "status": node.status,
        "thin": not own and layout.row_of[node.unique_id] in layout.named,
        "named": own,
        "critical": node.unique_id in on_path,
        "text": _duration_text(node),
    }


def _duration_text(node: _Node) -> str:
    """What is written after a named node's bar: its duration, and its status unless it passed."""
    if node.status == "skipped":
        return "skipped"
    duration = seconds_text(node.result.execution_time)
    return duration if node.status == "passed" else f"{node.result.status} · {duration}"


def _label_expression(labels: Mapping[str, str]) -> str:
    """The y axis shows each row's label, not its key (keys are unique ids and lane slots)."""
    return f"{json.dumps(dict(labels))}[datum.value]"


def _bars(rows: list[dict[str, Any]], x: alt.X, y: alt.Y, colour: alt.Color) -> alt.LayerChart:
    """Each node's bar in its status colour; a test in its model's row is a thin bar."""
    thick = [row for row in rows if not row["thin"] and row["status"] != "skipped"]
    thin = [row for row in rows if row["thin"] and row["status"] != "skipped"]
    own: alt.Chart = (
        alt.Chart(alt.InlineData(values=thick))
        .mark_bar(height=_BAR_PIXELS)
        .encode(x=x, x2="drawn_end:Q", y=y, color=colour)
    )
    tests: alt.Chart = (
        alt.Chart(alt.InlineData(values=thin))
        .mark_bar(height=_TEST_BAR_PIXELS)
        .encode(x=x, x2="drawn_end:Q", y=y, color=colour)
    )
    both: alt.LayerChart = alt.LayerChart(layer=[own, tests])
    return both


def _skipped_marks(rows: list[dict[str, Any]], x: alt.X, y: alt.Y) -> alt.Chart:
    """A skipped node has no duration: a grey cross when the failure it follows ended."""
    skipped = [row for row in rows if row["status"] == "skipped"]
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=skipped))
        .mark_point(shape="cross", filled=True, size=60, color=STATUS_COLOURS["skipped"])
        .encode(x=x, y=y)
    )
    return chart


def _durations(rows: list[dict[str, Any]], y: alt.Y) -> alt.Chart:
    """A named node's duration (and status, when it failed or was skipped) written after its bar."""
    named = [row for row in rows if row["named"]]
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=named))
        .mark_text(align="left", baseline="middle", dx=5, fontSize=10, color="#333333")
        .encode(x=alt.X("drawn_end:Q"), y=y, text="text:N")
    )
    return chart


def _critical_layers(rows: list[dict[str, Any]], critical: CriticalPath, x: alt.X, y: alt.Y) -> list[alt.Chart]:
    """The critical path: its bars outlined (with a legend entry) and joined by a dashed line, in time order."""
    path = [row for row in rows if row["critical"] and row["status"] != "skipped"]
    if not path:
        return []
    ordered = sorted(path, key=lambda row: (row["start"], row["end"]))
    points = [
        {"row": row["row"], "start": at, "order": 2 * index + edge}
        for index, row in enumerate(ordered)
        for edge, at in enumerate((row["start"], row["drawn_end"]))
    ]
    path = [{**row, "path": f"critical path ({seconds_text(critical.seconds)})"} for row in path]
    outline = (
        alt.Chart(alt.InlineData(values=path))
        .mark_bar(height=_BAR_PIXELS + 3, fillOpacity=0, strokeWidth=2)
        .encode(
            x=x,
            x2="drawn_end:Q",
            y=y,
            stroke=alt.Stroke(
                "path:N",
                scale=alt.Scale(range=[CRITICAL_COLOUR]),
                legend=alt.Legend(title=None, orient="top", symbolType="stroke", offset=30),
            ),
        )
    )
    line = (
        alt.Chart(alt.InlineData(values=points))
        .mark_line(color=CRITICAL_COLOUR, strokeWidth=1, strokeDash=[3, 2])
        .encode(x=x, y=y, order="order:Q")
    )
    return [outline, line]


def _step_rules(step_starts: Sequence[tuple[str, float]], span: float) -> list[alt.Chart]:
    """A light vertical rule where each step began, named at the top (unless too close to the last name)."""
    if len(step_starts) < 2:
        return []
    data = alt.InlineData(values=[{"step": step, "start": start} for step, start in step_starts])
    levels: list[list[dict[str, Any]]] = [[], []]
    last = [-span, -span]
    for step, start in step_starts:  # on the upper line when too close to the last name on the lower one
        level = next((index for index in (0, 1) if start - last[index] >= span * _STEP_NAME_GAP), None)
        if level is not None:
            levels[level].append({"step": step, "start": start})
            last[level] = start
    rule = alt.Chart(data).mark_rule(color="#bbbbbb", strokeDash=[4, 3]).encode(x="start:Q")
    names = [
        alt.Chart(alt.InlineData(values=steps))
        .mark_text(align="left", baseline="bottom", dx=2, y=-3 - 11 * level, fontSize=10, color="#555555")
        .encode(x="start:Q", text="step:N")
        for level, steps in enumerate(levels)
        if steps
    ]
    return [rule, *names]


def _title(nodes: Sequence[_Node]) -> str:
    counts = Counter(node.status for node in nodes)
    summary = ", ".join(f"{counts[status]} {status}" for status in STATUS_COLOURS if counts[status])
    return f"dbt nodes over time: {nodes_text(len(nodes))} ({summary})"


def _subtitle(layout: _Layout, critical: CriticalPath) -> list[str]:
    """What the chart shows beyond its legend: the critical path, and which nodes are named."""
    lines = []
    if critical.nodes:
        names = [_short(node_name(unique_id)) for unique_id in critical.nodes]
        if len(names) > _CHAIN_NAMES:
            names = [*names[:2], f"({len(names) - 4} more)", *names[-2:]]
        lines += _wrapped(
            [f"Critical path (outlined) {seconds_text(critical.seconds)}, {nodes_text(len(critical.nodes))}:", *names]
        )
    if layout.large:
        lines.append("Named: failed and skipped nodes, the slowest and the critical path; the others are unnamed rows.")
    else:
        lines.append("Every model, seed and snapshot has a row; the thin bars in it are its tests.")
    if layout.hidden:
        lines.append(f"{layout.hidden} more failed or skipped nodes are not named here: the report lists them all.")
    return lines


def _wrapped(words: Sequence[str], width: int = _LINE_CHARACTERS) -> list[str]:
    """The critical path's heading then its names joined by arrows, in lines of at most `width` characters
    (Vega does not wrap a title: one long line would widen the whole image)."""
    lines = [words[0]]
    for index, word in enumerate(words[1:]):
        joined = f"{lines[-1]} {word}" if index == 0 else f"{lines[-1]} → {word}"
        if len(joined) <= width:
            lines[-1] = joined
        else:
            lines.append(f"→ {word}")
    return lines


def _short(name: str) -> str:
    return name if len(name) <= _NAME_CHARACTERS else name[: _NAME_CHARACTERS - 1] + "…"


def _empty_chart() -> alt.Chart:
    """What the timeline says when no node ran (dbt could not start, or the project has none)."""
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=[{"text": "No node ran."}]))
        .mark_text(fontSize=13, align="left")
        .encode(text="text:N", x=alt.value(5), y=alt.value(15))
        .properties(width=300, height=30, title="dbt nodes over time")
        .configure(font=_FONT, aria=False)
        .configure_view(stroke=None)
    )
    return chart
