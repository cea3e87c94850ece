"""What the pictures of the Prefect UI show (scripts/screenshots.py): real dbt runs, a real server, real Chromium.

A passing and a failing run of the example project (a typo in an intermediate model: it fails, the models built
on it are skipped) run once for the module, against a `prefect server start` of the module's own whose UI calls
its own API. What a reader of the pictures relies on is asserted from the API (the report's markdown and its
timeline, the node table, the task runs the Runs page lists, with the UI's own query) and from the pages
Chromium rendered (their text, and PNGs that are not blank).
"""

from __future__ import annotations

import base64
import json
import re
import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterId,
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import StateType

from scripts.screenshots import (
    BROKEN_MODEL,
    Run,
    example_runs,
    failed_models,
    find_chromium,
    pages,
    private_server,
    take_screenshots,
)
from tests.prefect_api import prefect_client

# What the typo in BROKEN_MODEL keeps from running: everything built on it (dbt/models).
SKIPPED = {
    "int_orders_joined", "int_orders_aggregated_to_customers", "orders", "customers", "stores", "daily_revenue",
    "monthly_cohort_retention",
}  # fmt: skip
DUCKDB_ERROR = 'Referenced column "amount_payed" not found'


@dataclass(frozen=True)
class Runs:
    api: str
    passing: Run
    failing: Run


@dataclass(frozen=True)
class Shots:
    folder: Path
    texts: dict[str, str]


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        return find_chromium()
    except SystemExit as missing:  # the tests need it: CI installs it (.ci/run)
        pytest.fail(str(missing))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, prefect_database: Path) -> Iterator[Runs]:
    root = tmp_path_factory.mktemp("screenshots")
    with private_server(root, prefect_database) as server:
        passing, failing = example_runs(root / "runs", server.api, server.home)
        yield Runs(server.api, passing, failing)


@pytest.fixture(scope="module")
def shots(runs: Runs, chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Shots:
    """Every page of the script, photographed (each once it shows what it must, or the fixture fails)."""
    folder = tmp_path_factory.mktemp("images")
    ui = runs.api.removesuffix("/api")
    return Shots(folder, take_screenshots(chromium, ui, pages(runs.api, runs.passing, runs.failing), folder))


def artifact_data(api: str, artifact_id: UUID) -> str:
    """What an artifact holds: a report's markdown, a table's rows as JSON."""
    with prefect_client(api) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[artifact_id])))
    return str(artifact.data)


def section(markdown: str, heading: str) -> str:
    """The text of a `## heading` section of the markdown."""
    match = re.search(rf"^## {heading}\n(.*?)(?=^## |\Z)", markdown, re.MULTILINE | re.DOTALL)
    assert match, f"no section {heading!r} in:\n{markdown}"
    return match.group(1)


def timeline_texts(markdown: str) -> list[str]:
    """The texts of the timeline image embedded in the report (an SVG data URI)."""
    match = re.search(r"!\[[^\]]*\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", section(markdown, "Timeline"))
    assert match, section(markdown, "Timeline")
    svg = ET.fromstring(base64.b64decode(match.group(1)))
    return [text.strip() for element in svg.iter() for text in element.itertext() if text.strip()]


def test_the_failing_report_names_the_failed_model_first_with_its_error(runs: Runs) -> None:
    markdown = artifact_data(runs.api, runs.failing.report_id)
    assert markdown.startswith("# dbt run FAILED: `shop_analytics` on target `dev`")
    failures = [line for line in section(markdown, "Failures").splitlines() if line.startswith("- ")]
    assert failures[0].startswith(f"- `model.shop_analytics.{BROKEN_MODEL}` **error**: "), failures
    assert DUCKDB_ERROR in failures[0]
    assert not any(f"`model.shop_analytics.{name}`" in line for line in failures for name in SKIPPED)  # not failed


def test_the_passing_report_has_no_failures(runs: Runs) -> None:
    markdown = artifact_data(runs.api, runs.passing.report_id)
    assert markdown.startswith("# dbt run succeeded: `shop_analytics` on target `dev`")
    assert "## Failures" not in markdown


@pytest.mark.parametrize("run", ["passing", "failing"])
def test_the_report_embeds_a_timeline_naming_the_nodes(runs: Runs, run: str) -> None:
    texts = timeline_texts(artifact_data(runs.api, getattr(runs, run).report_id))
    assert {BROKEN_MODEL, "orders", "raw_payments", "products_snapshot"} <= set(texts), texts
    if run == "failing":
        assert set(texts) >= SKIPPED


def test_the_node_table_starts_with_the_failure_then_the_skipped_then_the_slowest(runs: Runs) -> None:
    rows = json.loads(artifact_data(runs.api, runs.failing.table_id))
    assert [(row["status"], row["node"]) for row in rows[:1]] == [("error", BROKEN_MODEL)]
    assert {row["node"] for row in rows[1 : 1 + len(SKIPPED)]} == SKIPPED
    assert {row["status"] for row in rows[1 : 1 + len(SKIPPED)]} == {"skipped"}
    rest = [row["duration_s"] for row in rows[1 + len(SKIPPED) :]]
    assert rest == sorted(rest, reverse=True)
    assert len(rows) == 46  # 7 sources, 10 seeds, 1 snapshot, 28 models; the tests did not run after the failure


def runs_page_task_runs(api: str, **task_runs: object) -> list[dict[str, Any]]:
    """The first page of the Runs page's Task runs tab (`/runs?tab=task-runs`), as the UI asks for it:
    POST /task_runs/paginate, expected start in the past 7 days (its default range), newest first, 100 a page;
    `task_runs` adds the UI's filters (`tags`, `state`)."""
    now = datetime.now(UTC)
    body = {
        "task_runs": {
            "expected_start_time": {"after_": (now - timedelta(days=7)).isoformat(), "before_": now.isoformat()},
            **task_runs,
        },
        "sort": "EXPECTED_START_TIME_DESC",
        "limit": 100,
        "page": 1,
    }
    response = httpx.post(f"{api}/task_runs/paginate", json=body, timeout=30)
    response.raise_for_status()
    return list(response.json()["results"])


def test_the_task_runs_tab_lists_every_node_of_the_last_run(runs: Runs) -> None:
    listed = runs_page_task_runs(runs.api)
    table = json.loads(artifact_data(runs.api, runs.failing.table_id))
    of_failing_run = {run["name"] for run in listed if run["flow_run_id"] == str(runs.failing.flow_run.id)}
    assert {row["node"] for row in table} <= of_failing_run
    assert any("dbt:model" in run["tags"] and "dbt-step:run" in run["tags"] for run in listed)


def test_the_task_runs_tab_filters_nodes_by_kind(runs: Runs) -> None:
    models = runs_page_task_runs(runs.api, tags={"all_": ["dbt:model"]})
    assert models
    assert all("dbt:model" in run["tags"] for run in models)
    assert {BROKEN_MODEL, *SKIPPED} <= {run["name"] for run in models}


def test_the_failed_model_is_found_by_its_state_type(runs: Runs) -> None:
    """Through the API, a failed node is a FAILED task run (a skipped one CANCELLED)."""
    failed = failed_models(runs.api, runs.failing.flow_run.id)
    assert [run.name for run in failed] == [BROKEN_MODEL]
    with prefect_client(runs.api) as client:
        skipped = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs.failing.flow_run.id])),
            task_run_filter=TaskRunFilter(
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.CANCELLED]))
            ),
        )
    assert {run.name for run in skipped} == SKIPPED


def test_the_task_runs_tab_state_filter_failed_finds_the_failed_model(runs: Runs) -> None:
    """The UI's States filter filters on state names: a node's final state is named as Prefect names its type."""
    failed = runs_page_task_runs(runs.api, tags={"all_": ["dbt:model"]}, state={"name": {"any_": ["Failed"]}})
    assert BROKEN_MODEL in {run["name"] for run in failed}


def png_colours(png: Path, limit: int = 64) -> int:
    """How many colours an 8-bit RGB(A), non-interlaced PNG (what Chromium writes) has, counting up to `limit`."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", png
    chunks: dict[bytes, bytes] = {}
    position = 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunks[kind] = chunks.get(kind, b"") + data[position + 8 : position + 8 + length]
        position += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour_type in (2, 6), interlace) == (8, True, 0), (depth, colour_type, interlace)
    pixel = 3 if colour_type == 2 else 4
    colours: set[bytes] = set()
    for row in png_rows(zlib.decompress(chunks[b"IDAT"]), width * pixel, height, pixel):
        colours.update(row[i : i + pixel] for i in range(0, len(row), pixel))
        if len(colours) >= limit:
            break
    return len(colours)


def png_rows(raw: bytes, stride: int, height: int, pixel: int) -> Iterator[bytes]:
    """The scanlines of a PNG's image data, unfiltered (filters None, Sub, Up, Average, Paeth)."""
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - pixel] if i >= pixel else 0
            corner = previous[i - pixel] if i >= pixel else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + previous[i]) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + previous[i]) // 2) & 0xFF
            elif kind == 4:
                line[i] = (line[i] + paeth(left, previous[i], corner)) & 0xFF
        yield bytes(line)
        previous = line


def paeth(left: int, up: int, corner: int) -> int:
    estimate = left + up - corner
    to_left, to_up, to_corner = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
    if to_left <= to_up and to_left <= to_corner:
        return left
    return up if to_up <= to_corner else corner


def test_every_page_is_photographed_as_rendered(shots: Shots) -> None:
    """Each PNG is a picture of a page, not a blank one (the fixture waited for each page's own texts)."""
    names = {"run-report-passing", "run-report-failing", "node-table-failing", "node-page-failed",
             "flow-run-failing", "task-runs"}  # fmt: skip
    assert {png.stem for png in shots.folder.glob("*.png")} == names
    for png in shots.folder.glob("*.png"):
        size = png.stat().st_size
        assert 20_000 < size < 600_000, (png.name, size)
        assert png_colours(png) >= 64, png.name


def test_the_failing_report_page_shows_the_failure_and_the_timeline(shots: Shots) -> None:
    text = shots.texts["run-report-failing"]
    assert f"model.shop_analytics.{BROKEN_MODEL} error: " in text
    assert DUCKDB_ERROR in text
    assert text.index("Failures") < text.index("Timeline") < text.index("Nodes")


def test_the_failed_node_page_shows_its_error_and_tags(shots: Shots) -> None:
    text = shots.texts["node-page-failed"]
    assert DUCKDB_ERROR in text
    assert "dbt:model" in text
    assert "dbt-step:run" in text


def test_the_node_table_page_lists_the_failure_first(shots: Shots) -> None:
    text = shots.texts["node-table-failing"]
    assert text.index(BROKEN_MODEL) < min(text.index(name) for name in SKIPPED)


def test_a_png_that_is_one_colour_is_seen_as_blank(tmp_path: Path) -> None:
    """The blank check itself: a one-colour PNG (filtered with Sub, as an encoder may) has one colour."""
    width, height = 8, 4
    rows = b"".join(b"\x01" + bytes([40, 41, 46]) + bytes(3 * (width - 1)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")
    (tmp_path / "blank.png").write_bytes(png)
    assert png_colours(tmp_path / "blank.png") == 1


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
