"""Soak: run the pipeline N times in a row against a local Prefect server; watch memory and open files.

By default each run is `python prefect_flows/pipeline.py`, a process of its own, as a user or a
Prefect worker starts it: after each run the script prints that process's peak memory, and the
memory and open files of the Prefect server, the long-lived part. With `--in-process` the flow is
called `--runs` times in this one process, as a team's own long-lived flow would call it (a
subflow, a loop, `serve`): then a leak in dbt, its adapters, event handlers, threads or temporary
profiles would grow with every run, and the script prints this process's resident memory, open
files and threads after each run. Either way it counts the private profile directories left
behind (they hold credentials; always 0).

It ends with a verdict and one JSON line. "Flat" means that, after the first `--warmup` runs (dbt
and Prefect fill their caches then), the flow's memory grows less than `--max-rss-growth-mib` in
all, and open files and threads do not grow at all; otherwise the exit code is 1.

    uv run python -m benchmarks.soak_pipeline                      # the example project, 30 runs
    uv run python -m benchmarks.soak_pipeline --in-process
    uv run python -m benchmarks.soak_pipeline --runs 10 --project-dir path/to/project
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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from benchmarks.harness import REPO, local_prefect_server

TARGET = "soak"


@dataclass(frozen=True)
class Sample:
    """One run: the flow's memory (and, in one process, its open files and threads), and the server's."""

    run: int
    wall_s: float
    flow_rss_mib: float  # in one process: resident after the run; a process per run: that process's peak
    flow_files: int | None  # in one process only: a process per run closes everything when it exits
    flow_threads: int | None
    server_rss_mib: float
    server_files: int
    profiles_left: int  # private profile directories left in TMPDIR (they hold credentials)


def rss_mib(pid: int | str = "self") -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (`prefect server start` runs the API in a child)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(descendant for child in children for descendant in process_tree(int(child)))]


def open_files(pid: int | str = "self") -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


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


def run_in_this_process(select: str | None) -> tuple[float, int | None, int | None]:
    """One run of the flow in this process: (resident MiB, open files, threads) after it."""
    # Imported here: Prefect reads its settings (the API URL set by main) when it is first imported.
    from prefect_flows.pipeline import dbt_full_pipeline

    dbt_full_pipeline(target=TARGET, select=select, retries=0)
    gc.collect()  # what a run leaves behind, not garbage waiting for the next collection
    return rss_mib(), open_files(), sum(1 for _ in Path("/proc/self/task").iterdir())


def run_as_a_process(select: str | None) -> tuple[float, int | None, int | None]:
    """One run as a user or a worker starts it, `python prefect_flows/pipeline.py`: (peak MiB, None, None)."""
    command = [sys.executable, "prefect_flows/pipeline.py", "--target", TARGET, "--retries", "0"]
    with tempfile.TemporaryFile() as log:  # a pipe nobody reads would fill up and block the run
        process = subprocess.Popen(
            [*command, *(["--select", select] if select else [])], cwd=REPO, stdout=log, stderr=log
        )
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise RuntimeError(log.read().decode(errors="replace")[-3000:])
    return usage.ru_maxrss / 1024, None, None


def soak(
    runs: int, run_once: Callable[[], tuple[float, int | None, int | None]], server_pid: int, scratch: Path
) -> list[Sample]:
    """Run the pipeline `runs` times, sampling after each run."""
    samples = []
    for run in range(1, runs + 1):
        started = time.perf_counter()
        flow_rss, flow_files, flow_threads = run_once()
        server = process_tree(server_pid)
        samples.append(
            Sample(
                run=run,
                wall_s=round(time.perf_counter() - started, 2),
                flow_rss_mib=round(flow_rss, 1),
                flow_files=flow_files,
                flow_threads=flow_threads,
                server_rss_mib=round(sum(rss_mib(pid) for pid in server), 1),
                server_files=sum(open_files(pid) for pid in server),
                profiles_left=len(list(scratch.glob("dbt-profiles-*"))),
            )
        )
        print(_row(samples[-1]), flush=True)
    return samples


HEADER = (
    f"{'run':>4} {'wall s':>7} {'flow MiB':>9} {'files':>6} {'threads':>8} "
    f"{'server MiB':>11} {'server files':>13} {'profiles left':>14}"
)


def _row(sample: Sample) -> str:
    def optional(value: int | None, width: int) -> str:
        return f"{'-' if value is None else value:>{width}}"

    return (
        f"{sample.run:>4} {sample.wall_s:>7.1f} {sample.flow_rss_mib:>9.1f} {optional(sample.flow_files, 6)} "
        f"{optional(sample.flow_threads, 8)} {sample.server_rss_mib:>11.1f} {sample.server_files:>13} "
        f"{sample.profiles_left:>14}"
    )


def verdict(samples: list[Sample], warmup: int, max_rss_growth_mib: float) -> dict[str, object]:
    """Growth after the warm-up runs: total, per run (least-squares slope), and whether it stays flat."""
    settled = samples[warmup - 1 :] if len(samples) > warmup else samples
    first, last = settled[0], settled[-1]
    runs = [float(sample.run) for sample in settled]
    rss = [sample.flow_rss_mib for sample in settled]
    slope = statistics.linear_regression(runs, rss).slope if len(settled) > 1 else 0.0
    rss_growth = last.flow_rss_mib - first.flow_rss_mib
    growth = {
        "flow_rss_mib": round(rss_growth, 1),
        "flow_rss_mib_per_run": round(slope, 2),
        "flow_files": None if first.flow_files is None else (last.flow_files or 0) - first.flow_files,
        "flow_threads": None if first.flow_threads is None else (last.flow_threads or 0) - first.flow_threads,
        "server_rss_mib": round(last.server_rss_mib - first.server_rss_mib, 1),
        "server_files": last.server_files - first.server_files,
    }
    flat = (
        rss_growth < max_rss_growth_mib
        and (growth["flow_files"] or 0) <= 0
        and (growth["flow_threads"] or 0) <= 0
        and last.server_files <= first.server_files
        and all(sample.profiles_left == 0 for sample in samples)
    )
    return {"runs": len(samples), "warmup": warmup, "from_run": first.run, "growth": growth, "flat": flat}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="pipeline runs in a row (default 30)")
    parser.add_argument("--project-dir", type=Path, default=REPO / "dbt", help="dbt project (default: dbt/)")
    parser.add_argument("--select", help="dbt selection, for a shorter soak")
    parser.add_argument(
        "--in-process", action="store_true", help="call the flow in this process instead of one process per run"
    )
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
        how = "in one process" if args.in_process else "one process per run"
        print(f"{args.runs} runs of {args.project_dir} ({args.select or 'every node'}), {how}; Prefect API {api}")
        print(HEADER)
        try:
            runner = run_in_this_process if args.in_process else run_as_a_process
            samples = soak(args.runs, lambda: runner(args.select), server_pid, scratch)
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
