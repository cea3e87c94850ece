"""Soak: run the pipeline N times in a row in one process and watch memory and open files.

A worker starts a new process per flow run, but a team that calls `dbt_full_pipeline` from its
own long-lived flow (as a subflow, in a loop, from `serve`) keeps one process for all of them: a
leak there (dbt adapters, connections, event handlers, threads, temporary profiles) grows with
every run. This script runs the flow `--runs` times (default 30) in one process against a local
Prefect server, and after each run prints the process's resident memory, open file descriptors
and threads, the server's memory, and the private profile directories left behind (always 0).

It ends with a verdict and one JSON line. "Flat" means that, after the first `--warmup` runs (dbt
and Prefect fill their caches then), memory grows less than `--max-rss-growth-mib` in all and
open files and threads do not grow at all; otherwise the exit code is 1.

    uv run python benchmarks/soak_pipeline.py                       # the example project, 30 runs
    uv run python benchmarks/soak_pipeline.py --runs 10 --select +staging
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from harness import REPO, local_prefect_server

TARGET = "soak"


@dataclass(frozen=True)
class Sample:
    """The state of the soaking process (and of the server) after one run."""

    run: int
    wall_s: float
    rss_mib: float
    open_files: int
    threads: int
    server_rss_mib: float
    profiles_left: int


def rss_mib(pid: int | str = "self") -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (`prefect server start` runs the API in a child)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return rss_mib(pid) + sum(tree_rss_mib(int(child)) for child in children)


def prepare_workspace(work: Path, project_dir: Path, env: dict[str, str]) -> None:
    """A copy of the project, an environments file with one DuckDB target, and its blocks."""
    project = work / "project"
    shutil.copytree(project_dir, project, ignore=shutil.ignore_patterns("target", "logs", "profiles.yml"))
    soak = {"adapter": "duckdb", "path": str(work / "soak.duckdb"), "threads": 4}
    environments = {"defaults": {"dbt_project_dir": str(project)}, "environments": {TARGET: soak}}
    (work / "environments.yaml").write_text(yaml.safe_dump(environments))
    subprocess.run(
        [sys.executable, "-m", "infrastructure.setup_profiles", "--blocks-only", "--target", TARGET],
        cwd=REPO, env=env, check=True, capture_output=True,
    )  # fmt: skip


def soak(runs: int, select: str | None, server_pid: int, scratch: Path) -> list[Sample]:
    """Run the flow `runs` times in this process, sampling after each run."""
    # Imported here: Prefect reads its settings (the API URL set by main) when it is first imported.
    from prefect_flows.pipeline import dbt_full_pipeline

    samples = []
    for run in range(1, runs + 1):
        started = time.perf_counter()
        dbt_full_pipeline(target=TARGET, select=select, retries=0)
        wall = time.perf_counter() - started
        gc.collect()  # what a run leaves behind, not garbage waiting for the next collection
        samples.append(
            Sample(
                run=run,
                wall_s=round(wall, 2),
                rss_mib=round(rss_mib(), 1),
                open_files=sum(1 for _ in Path("/proc/self/fd").iterdir()),
                threads=sum(1 for _ in Path("/proc/self/task").iterdir()),
                server_rss_mib=round(tree_rss_mib(server_pid), 1),
                profiles_left=len(list(scratch.glob("dbt-profiles-*"))),
            )
        )
        print(_row(samples[-1]), flush=True)
    return samples


HEADER = f"{'run':>4} {'wall s':>8} {'RSS MiB':>9} {'files':>6} {'threads':>8} {'server MiB':>11} {'profiles left':>14}"


def _row(sample: Sample) -> str:
    return (
        f"{sample.run:>4} {sample.wall_s:>8.1f} {sample.rss_mib:>9.1f} {sample.open_files:>6} "
        f"{sample.threads:>8} {sample.server_rss_mib:>11.1f} {sample.profiles_left:>14}"
    )


def verdict(samples: list[Sample], warmup: int, max_rss_growth_mib: float) -> dict[str, object]:
    """Growth after the warm-up runs: total, per run (least-squares slope), and whether it stays flat."""
    settled = samples[warmup - 1 :] if len(samples) > warmup else samples
    first, last = settled[0], settled[-1]
    runs = [float(sample.run) for sample in settled]
    slope = statistics.linear_regression(runs, [s.rss_mib for s in settled]).slope if len(settled) > 1 else 0.0
    rss_growth = last.rss_mib - first.rss_mib
    growth = {
        "rss_mib": round(rss_growth, 1),
        "rss_mib_per_run": round(slope, 2),
        "open_files": last.open_files - first.open_files,
        "threads": last.threads - first.threads,
        "server_rss_mib": round(last.server_rss_mib - first.server_rss_mib, 1),
    }
    flat = (
        rss_growth < max_rss_growth_mib
        and last.open_files <= first.open_files
        and last.threads <= first.threads
        and all(s.profiles_left == 0 for s in samples)
    )
    return {"runs": len(samples), "warmup": warmup, "from_run": first.run, "growth": growth, "flat": flat}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="pipeline runs in a row (default 30)")
    parser.add_argument("--project-dir", type=Path, default=REPO / "dbt", help="dbt project (default: dbt/)")
    parser.add_argument("--select", help="dbt selection, for a shorter soak")
    parser.add_argument("--warmup", type=int, default=3, help="runs before growth is measured (default 3)")
    parser.add_argument(
        "--max-rss-growth-mib", type=float, default=20.0, help="memory growth still called flat (default 20)"
    )
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="dbt-soak-", ignore_cleanup_errors=True) as temporary,
        local_prefect_server(Path(temporary) / "prefect-home") as (server_pid, api),
    ):
        work = Path(temporary)
        scratch = work / "tmp"
        scratch.mkdir()
        os.environ.update(
            PREFECT_API_URL=api,
            PREFECT_HOME=str(work / "prefect-home"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PIPELINE_ENVIRONMENTS_FILE=str(work / "environments.yaml"),
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
            TMPDIR=str(scratch),
            # The runs' logs still go to the server; the console shows the table only.
            PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="WARNING",
        )
        tempfile.tempdir = str(scratch)  # where the flow renders its private profiles
        prepare_workspace(work, args.project_dir.resolve(), dict(os.environ))
        print(f"{args.runs} runs of {args.project_dir} ({args.select or 'every node'}), one process; Prefect API {api}")
        print(HEADER)
        try:
            samples = soak(args.runs, args.select, server_pid, scratch)
        except Exception as error:  # a failed run ends the soak: its numbers would mean nothing
            print(f"\nRun failed, soak stopped: {error}", file=sys.stderr)
            return 1
        finally:
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10)  # the last run's logs, before the server stops

    summary = verdict(samples, args.warmup, args.max_rss_growth_mib)
    growth = summary["growth"]
    print(f"\nAfter run {summary['from_run']}: {growth}")
    print("Flat." if summary["flat"] else "GROWING: see the columns above.")
    print(json.dumps({**summary, "samples": [asdict(sample) for sample in samples]}))
    return 0 if summary["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
