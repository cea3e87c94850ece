"""Screenshots of the Prefect UI for a passing and a failing run of the example project (docs/images/).

Why: the run report, the node table and the node task runs are meant to be read in the Prefect UI, and a
markdown artifact, an embedded SVG or a task run made from dbt's events can be right in the API and still
render badly (a blank image, a table in the wrong order, a node page without its error). The pictures show a
reader what a run looks like before they run anything, and they are checked by looking.

Everything is real and private: a fresh copy of the example project (dbt/) on DuckDB, its own PREFECT_HOME and
`prefect server start` on a free loopback port (the tests' helpers, as benchmarks/harness.py uses them), the
README's commands, and headless Chromium (`apt-get install -y chromium`). The project runs as it is, then with a
typo in an intermediate model, so that model fails and everything built on it is skipped. Each page is
photographed once it shows what it must (`pages`), or the script fails saying what is missing. The server and
the temporary folder are removed on exit, Ctrl-C or SIGTERM included.

    uv run python -m scripts.screenshots [--out docs/images]
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from uuid import UUID

from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
    TaskRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType, TaskRun
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from tests.conftest import Workspace, copy_example_project, duckdb_environments, make_workspace
from tests.prefect_api import prefect_client, read_flow_run
from tests.prefect_server import PrefectServer

REPO = Path(__file__).resolve().parents[1]
TARGET = "dev"
# A busy 2-core machine migrating a fresh database needs more than the tests' usual 90 s.
SERVER_START_TIMEOUT_SECONDS = 180
# The failing run: a typo in a column name of an intermediate model (DuckDB: Binder Error), so the model
# fails and the models built on it (int_orders_joined, the marts orders, customers, ...) are skipped.
BROKEN_MODEL = "int_payments_pivoted_to_orders"
BROKEN_MODEL_FILE = Path("models") / "intermediate" / f"{BROKEN_MODEL}.sql"
BROKEN_FROM, BROKEN_TO = "select * from pivoted", "select * from pivoted\nwhere amount_payed > 0"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--disable-sync",
    "--disable-background-networking", "--disable-component-update", "--remote-debugging-port=0",
)  # fmt: skip
# How long a page may take to show what it must (the UI polls the API; a busy machine answers slowly).
PAGE_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Run:
    """A pipeline run as the pictures need it: its flow run, its report and node table artifacts."""

    flow_run: FlowRun
    report_id: UUID
    table_id: UUID


@dataclass(frozen=True)
class Page:
    """A page of the Prefect UI to photograph: its file name, its path in the UI and the window to show it in."""

    name: str
    path: str
    shows: tuple[str, ...]  # the texts it must show before it is photographed
    width: int = 1600
    height: int = 1000  # at most: the window is as tall as the page's content, if shorter


def find_chromium() -> str:
    """Chromium's command, or exit saying how to install it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("No `chromium` or `chromium-browser` on PATH: apt-get install -y chromium")
    return chromium


def break_model(project: Path) -> str:
    """Put a typo in a column name of an intermediate model of `project`; returns the model's name."""
    model = project / BROKEN_MODEL_FILE
    sql = model.read_text(encoding="utf-8")
    if BROKEN_FROM not in sql:
        raise SystemExit(f"{model} no longer ends with {BROKEN_FROM!r}: update BROKEN_FROM in {__file__}")
    model.write_text(sql.replace(BROKEN_FROM, BROKEN_TO), encoding="utf-8")
    return BROKEN_MODEL


def pipeline_run(workspace: Workspace, api: str, *, fails: bool = False) -> Run:
    """The README's pipeline command in `workspace` (which must fail, or succeed), and what it published."""
    result = workspace.pipeline("--target", TARGET)
    output = result.stdout + result.stderr
    if (result.returncode != 0) != fails:
        expected = "fail" if fails else "succeed"
        raise RuntimeError(f"the pipeline did not {expected} (exit status {result.returncode}):\n{output[-4000:]}")
    flow_run = read_flow_run(api, output)
    return Run(
        flow_run,
        artifact_id(api, flow_run.id, f"dbt-run-report-{TARGET}"),
        artifact_id(api, flow_run.id, f"dbt-nodes-{TARGET}"),
    )


def example_runs(root: Path, api: str, prefect_home: Path) -> tuple[Run, Run]:
    """A passing run of a copy of the example project, then a failing one of the same copy with a model broken.

    A first run comes before them: on an empty warehouse the source freshness step finds no table to check
    (the seeds load them), and the pictures show a run as a user sees it every day after that.
    """
    root.mkdir(parents=True, exist_ok=True)
    project = copy_example_project(root / "dbt")
    workspace = make_workspace(root, api, prefect_home)
    workspace.write_environments(duckdb_environments(project, root / "warehouse" / f"{TARGET}.duckdb", TARGET))
    workspace.setup()
    pipeline_run(workspace, api)
    passing = pipeline_run(workspace, api)
    break_model(project)
    return passing, pipeline_run(workspace, api, fails=True)


def artifact_id(api: str, flow_run_id: UUID, key: str) -> UUID:
    """The id of the artifact `key` the flow run published."""
    with prefect_client(api) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), key=ArtifactFilterKey(any_=[key])
            )
        )
    if len(artifacts) != 1:
        raise RuntimeError(f"flow run {flow_run_id} published {len(artifacts)} artifacts {key!r}, not one")
    return artifacts[0].id


def failed_models(api: str, flow_run_id: UUID) -> list[TaskRun]:
    """The task runs of the models that failed in the flow run."""
    with prefect_client(api) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(
                tags=TaskRunFilterTags(all_=["dbt:model"]),
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.FAILED])),
            ),
        )


def pages(api: str, passing: Run, failing: Run) -> list[Page]:
    """The pages a reader needs: each run's report, the failing run's node table and flow run, its failed node's
    page, and the Runs page's Task runs tab (`tab=task-runs`), where every node is a task run."""
    failed = failed_models(api, failing.flow_run.id)
    if len(failed) != 1:
        raise RuntimeError(f"the failing run has {len(failed)} failed models, not one ({BROKEN_MODEL})")
    artifact = "artifacts/artifact"
    return [
        Page("run-report-passing", f"{artifact}/{passing.report_id}", ("dbt run succeeded", "Timeline"), height=2400),
        Page("run-report-failing", f"{artifact}/{failing.report_id}", ("dbt run FAILED", BROKEN_MODEL), height=2400),
        Page("node-table-failing", f"{artifact}/{failing.table_id}", (BROKEN_MODEL, "skipped"), height=1100),
        Page("node-page-failed", f"runs/task-run/{failed[0].id}", (BROKEN_MODEL, "amount_payed")),
        Page("flow-run-failing", f"runs/flow-run/{failing.flow_run.id}", (failing.flow_run.name, "Task Runs")),
        # Newest first: the failing run's skipped models, the models built after the failure, then the failed one.
        Page("task-runs", "runs?tab=task-runs", (BROKEN_MODEL, "dbt:model"), height=2100),
    ]


class Browser:
    """Headless Chromium driven over the DevTools protocol, which photographs a page once it shows what it must.

    (Chromium's own `--screenshot` photographs a page when a budget of virtual time runs out, sometimes before
    the UI has fetched what it shows, such as a node's log lines.)
    """

    def __init__(self, socket: Connection) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, session: str | None = None, **params: object) -> dict[str, Any]:
        """Send one DevTools command (to the page's session if given) and return its result."""
        number = next(self.ids)
        message: dict[str, object] = {"id": number, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:  # events come in between: skip them
            reply = json.loads(self.socket.recv(timeout=PAGE_TIMEOUT_SECONDS))
            if reply.get("id") == number:
                if "error" in reply:
                    raise RuntimeError(f"chromium: {method}: {reply['error']}")
                return dict(reply["result"])

    def photograph(self, url: str, destination: Path, page: Page) -> str:
        """Save a PNG of `url` once it shows `page.shows` and its images have loaded, in a window as tall as its
        content (from SHORTEST_WINDOW to `page.height`); returns the page's text."""
        self._window(page.width, SHORTEST_WINDOW)
        self.call("Page.navigate", self.session, url=url)
        text = self._wait_for(page)
        height = min(page.height, int(self._evaluate(CONTENT_HEIGHT)))
        if text is not None and height > SHORTEST_WINDOW:
            self._window(page.width, height)
            text = self._wait_for(page)
        shot = self.call("Page.captureScreenshot", self.session, format="png")
        destination.write_bytes(base64.b64decode(shot["data"]))
        if text is None:
            raise RuntimeError(
                f"{url} did not show {page.shows} and its images within {PAGE_TIMEOUT_SECONDS} s: see {destination}"
            )
        return text

    def _window(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", self.session, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip

    def _evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", self.session, expression=expression, returnByValue=True)["result"].get(
            "value"
        )

    def _wait_for(self, page: Page) -> str | None:
        """The page's text once it shows `page.shows` with its images loaded, twice in a row a second apart
        (the UI fades pages in); None if it does not within PAGE_TIMEOUT_SECONDS."""
        deadline, ready = time.monotonic() + PAGE_TIMEOUT_SECONDS, False
        while time.monotonic() < deadline:
            time.sleep(1)
            was_ready = ready
            text, images = self._evaluate(PAGE_STATE) or ("", False)
            ready = images and all(words in text for words in page.shows)
            if ready and was_ready:
                return str(text)
        return None


# The page's text, and whether every image on it has loaded (the report's timeline is an image).
PAGE_STATE = "[document.body.innerText, [...document.images].every((image) => image.complete && image.naturalWidth)]"
# The height of the page's content, in a window shorter than it: the UI scrolls inside an element of the page.
SHORTEST_WINDOW = 800
CONTENT_HEIGHT = "Math.max(...[...document.querySelectorAll('*')].map((element) => element.scrollHeight))"


@contextmanager
def browser(chromium: str) -> Iterator[Browser]:
    """A headless Chromium with a throwaway profile, killed on the way out."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            with connect(_devtools_url(Path(profile), process), max_size=None, open_timeout=30) as socket:
                yield Browser(socket)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _devtools_url(profile: Path, process: subprocess.Popen[bytes]) -> str:
    """The browser's DevTools address, which Chromium writes in its profile once it listens."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + PAGE_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        if port_file.is_file() and len(lines := port_file.read_text().split()) == 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.2)
    raise RuntimeError(f"chromium did not start (exit status {process.poll()})")


def take_screenshots(chromium: str, ui: str, shots: Sequence[Page], out: Path) -> dict[str, str]:
    """Photograph every page into `out`; returns the text of each page by name."""
    out.mkdir(parents=True, exist_ok=True)
    texts = {}
    with browser(chromium) as opened:
        for page in shots:
            destination = out / f"{page.name}.png"
            texts[page.name] = opened.photograph(f"{ui}/{page.path}", destination, page)
            print(f"{destination} ({destination.stat().st_size // 1024} KiB): {ui}/{page.path}")
    return texts


@contextmanager
def private_server(root: Path, database: Path | None = None) -> Iterator[PrefectServer]:
    """A `prefect server start` of its own under `root`, its UI calling its own API, stopped on the way out;
    starting from a copy of `database`, migrated already (tests/prefect_server.py), if given."""
    server = PrefectServer(root / "prefect-home", database=database)
    try:
        # The UI calls the API at PREFECT_UI_API_URL, by default on port 4200 whatever port the server has.
        with _environment(PREFECT_UI_API_URL=server.api):
            server.start(timeout=SERVER_START_TIMEOUT_SECONDS)
        yield server
    finally:
        server.stop()


@contextmanager
def _environment(**variables: str) -> Iterator[None]:
    """This process's environment with `variables` set, as it was afterwards (for a child started meanwhile)."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the two runs against a private server and photograph their pages into --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="folder of the PNGs")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # cleaned up as on Ctrl-C
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="screenshots-") as temporary, private_server(Path(temporary)) as server:
        passing, failing = example_runs(Path(temporary) / "runs", server.api, server.home)
        take_screenshots(chromium, server.api.removesuffix("/api"), pages(server.api, passing, failing), args.out)
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
