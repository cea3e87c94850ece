"""Screenshot, in headless Chromium, how the Prefect UI shows the latest run of a target.

Takes two pictures: the run report artifact (`dbt-run-report-<target>`) and its flow run page,
where each dbt node is a task run under its step. Needs a Prefect server (PREFECT_API_URL) and
Chromium (`apt-get install chromium`):

    uv run python scripts/screenshot_report.py --target dev --out screenshots/
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey
from prefect.settings import PREFECT_API_URL

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1800",
    # The UI renders after its API calls: without a time budget the page is still blank.
    "--virtual-time-budget=20000",
]  # fmt: skip


def screenshot(url: str, destination: Path) -> None:
    """Save a PNG of `url` as Chromium renders it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={destination}", url],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    print(f"{url} -> {destination}")


def main() -> None:
    """Find the latest report of the target and photograph it and its flow run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="dev")
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    args = parser.parse_args()
    api = PREFECT_API_URL.value()
    if not api:
        raise SystemExit("Set PREFECT_API_URL to a running Prefect server (the ephemeral one has no UI).")
    ui = api.removesuffix("/api")
    with get_client(sync_client=True) as client:
        artifacts = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(
                key=ArtifactCollectionFilterKey(any_=[f"dbt-run-report-{args.target}"])
            ),
            limit=1,
        )
    if not artifacts:
        raise SystemExit(f"No run report for target {args.target!r} yet: run the pipeline first.")
    artifact = artifacts[0]
    args.out.mkdir(parents=True, exist_ok=True)
    screenshot(f"{ui}/artifacts/artifact/{artifact.latest_id}", args.out / f"report-{args.target}.png")
    screenshot(f"{ui}/runs/flow-run/{artifact.flow_run_id}", args.out / f"flow-run-{args.target}.png")


if __name__ == "__main__":
    main()
