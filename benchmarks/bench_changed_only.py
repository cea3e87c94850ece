"""`--changed-only` against a full run, side by side: what a run that has nothing (or one model) to build costs.

For each round, on its own copy of the project and a fresh DuckDB file, against a local Prefect server
that records every node:

- full: the pipeline builds everything (and becomes the target's last good state);
- unchanged: `--changed-only` right after, nothing changed;
- one model: `--changed-only` after a comment is added to one model (`--model`).

Printed: median wall time of each, the unchanged and one-model runs as a share of the full run, and
how many nodes each ran (from the run's own run_results.json files); the last line is JSON.

    uv run python -m benchmarks.bench_changed_only                     # example project, 5 rounds
    uv run python -m benchmarks.bench_changed_only --models 500        # the synthetic project
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.bench_pipeline import copy_project, generate_project
from benchmarks.harness import REPO, local_prefect_server
from dbt_pipeline.dbt_project import reports_folder

RUNS = ("full", "unchanged", "one model")


def pipeline(project: Path, env: dict[str, str], *args: str) -> tuple[float, int]:
    """Run the pipeline on target `bench`; its wall seconds and the nodes its steps ran."""
    command = [sys.executable, "prefect_flows/pipeline.py", "--target", "bench", "--project-dir", str(project)]
    started = time.perf_counter()
    result = subprocess.run([*command, *args], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"the pipeline failed:\n{(result.stdout + result.stderr)[-3000:]}")
    runs = sorted(reports_folder(project, "bench").iterdir(), key=lambda path: path.stat().st_mtime)
    ran = {
        node["unique_id"]
        for path in runs[-1].glob("*.run_results.json")
        if not path.name.startswith(("docs-generate", "source-freshness"))
        for node in json.loads(path.read_text())["results"]
    }
    return wall, len(ran)


def one_round(source: Path, work: Path, env: dict[str, str], model: str) -> dict[str, tuple[float, int]]:
    project = copy_project(source, work / "project", work / "bench.duckdb")
    environments = {
        "environments": {
            "bench": {
                "adapter": "duckdb",
                "path": str(work / "bench.duckdb"),
                "dbt_project_dir": str(project),
                "state_store": str(work / "state"),
            }
        }
    }
    (work / "environments.yaml").write_text(yaml.safe_dump(environments))
    round_env = {**env, "PIPELINE_ENVIRONMENTS_FILE": str(work / "environments.yaml")}
    subprocess.run(
        [sys.executable, "-m", "infrastructure.setup_profiles", "--blocks-only"],
        cwd=REPO, env=round_env, check=True, capture_output=True,
    )  # fmt: skip
    measured = {"full": pipeline(project, round_env), "unchanged": pipeline(project, round_env, "--changed-only")}
    (edited,) = project.glob(f"models/**/{model}.sql")
    edited.write_text(edited.read_text() + "\n-- edited\n")
    measured["one model"] = pipeline(project, round_env, "--changed-only")
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, help="a synthetic project of this many models (default: dbt/)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--model", help="the model edited (default: stg_shop__stores, or the synthetic's last)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="dbt-changed-", ignore_cleanup_errors=True) as temporary,
        local_prefect_server(Path(temporary) / "prefect-home") as (_, api),
    ):
        work = Path(temporary)
        source = generate_project(work / "synthetic", args.models) if args.models else REPO / "dbt"
        model = args.model or (f"model_{args.models - 1:04d}" if args.models else "stg_shop__stores")
        env = {
            **os.environ,
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(work / "prefect-home"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        print(f"{source}; {args.rounds} rounds; one model: {model}; Prefect API {api}")
        rounds = []
        for number in range(1, args.rounds + 1):
            (work / f"round-{number}").mkdir()
            measured = one_round(source, work / f"round-{number}", env, model)
            rounds.append(measured)
            runs = (f"{name} {wall:5.1f} s ({nodes} nodes)" for name, (wall, nodes) in measured.items())
            print(f"  round {number}: " + "  ".join(runs), flush=True)
    report(rounds)


def report(rounds: list[dict[str, tuple[float, int]]]) -> None:
    walls = {name: statistics.median(measured[name][0] for measured in rounds) for name in RUNS}
    nodes = {name: rounds[-1][name][1] for name in RUNS}
    print(f"\n{'run':<10} {'wall (s)':>9} {'x full':>7} {'nodes':>6}")
    for name in RUNS:
        print(f"{name:<10} {walls[name]:9.1f} {walls[name] / walls['full']:7.2f} {nodes[name]:6d}")
    summary = {
        name: {
            "wall_s": round(walls[name], 2),
            "share_of_full": round(walls[name] / walls["full"], 3),
            "nodes": nodes[name],
        }
        for name in RUNS
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
