"""Our pipeline vs the raw dbt CLI vs prefect-dbt's PrefectDbtRunner, measured side by side.

Generates a synthetic dbt project of N models (chains and fan-outs, a not_null test on every model
and a seed), then runs the same steps with each contender (`--mode steps`: seed, snapshot, run,
test, docs generate; `--mode build`: build, docs generate), alternating contenders round after
round so that machine noise hits them alike:

- raw dbt: one `dbt <step>` process per step, as a person would type them;
- ours: `python prefect_flows/pipeline.py` against a local Prefect server (every node a task run);
- prefect-dbt: `PrefectDbtRunner().invoke([...])` per step inside a flow, same server.

Each contender gets its own copy of the project and a fresh DuckDB file per round. Printed: median
wall time, peak memory (max RSS of the processes), the ratio to raw dbt and the marginal cost per
node against raw dbt; the last line is the same as JSON.

    uv run python -m benchmarks.bench_pipeline                # 500 models, 3 rounds
    uv run python -m benchmarks.bench_pipeline --models 200 --rounds 5
    uv run python -m benchmarks.bench_pipeline --mode build       # dbt build + docs generate
    uv run python -m benchmarks.bench_pipeline --project-dir dbt   # any existing project
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchmarks.harness import BIN, REPO, local_prefect_server

STEPS_OF_MODE = {
    "steps": [["seed"], ["snapshot"], ["run"], ["test"], ["docs", "generate"]],
    "build": [["build"], ["docs", "generate"]],
}
PROFILE = "bench"

PREFECT_DBT_FLOW = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path
    from prefect import flow
    from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

    @flow(name="prefect-dbt-runner-bench")
    def bench(project_dir: str, steps: list[list[str]]) -> None:
        settings = PrefectDbtSettings(project_dir=Path(project_dir), profiles_dir=Path(project_dir))
        runner = PrefectDbtRunner(settings=settings, raise_on_failure=True)
        for step in steps:
            runner.invoke([*step, "--target", "bench"])

    bench(sys.argv[1], json.loads(sys.argv[2]))
    """
)


@dataclass
class Measure:
    """One contender's runs: wall seconds and peak RSS (MiB) of each round."""

    walls: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def peak(self) -> float:
        return max(self.peaks)


def generate_project(root: Path, models: int) -> Path:
    """A project of `models` models: each reads one earlier model, so the graph has chains and fan-outs."""
    (root / "models").mkdir(parents=True)
    (root / "seeds").mkdir()
    (root / "snapshots").mkdir()
    (root / "dbt_project.yml").write_text(
        f"name: bench\nprofile: {PROFILE}\nversion: '1.0'\nconfig-version: 2\n"
        "models:\n  bench:\n    +materialized: view\n"
    )
    (root / "seeds" / "raw_numbers.csv").write_text("id,value\n" + "".join(f"{i},{i * 7 % 13}\n" for i in range(100)))
    (root / "models" / "model_0000.sql").write_text("select id, value from {{ ref('raw_numbers') }}\n")
    columns = []
    for index in range(1, models):
        # Parent: the previous model every third model (chains), else a model half as far (fan-outs).
        parent = index - 1 if index % 3 else index // 2
        (root / "models" / f"model_{index:04d}.sql").write_text(
            f"select id, value + {index % 10} as value from {{{{ ref('model_{parent:04d}') }}}}\n"
        )
    for index in range(models):
        columns.append({"name": f"model_{index:04d}", "columns": [{"name": "id", "data_tests": ["not_null"]}]})
    (root / "models" / "schema.yml").write_text(yaml.safe_dump({"version": 2, "models": columns}, sort_keys=False))
    return root


def copy_project(source: Path, destination: Path, database: Path) -> Path:
    """A contender's own copy of the project with a profiles.yml for the raw CLI and prefect-dbt."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("target", "logs", "profiles.yml"))
    profile_name = yaml.safe_load((destination / "dbt_project.yml").read_text()).get("profile", PROFILE)
    outputs = {"bench": {"type": "duckdb", "path": str(database), "threads": 1}}
    (destination / "profiles.yml").write_text(yaml.safe_dump({profile_name: {"target": "bench", "outputs": outputs}}))
    return destination


def run_measured(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Run a command; return its wall seconds and peak RSS in MiB (from the kernel's rusage)."""
    # Output goes to a file: a pipe nobody reads until the end fills up and blocks the process.
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{log.read().decode()[-3000:]}")
    return wall, usage.ru_maxrss / 1024


Contender = Callable[[Path, dict[str, str], str], tuple[float, float]]


def raw_dbt(project: Path, env: dict[str, str], mode: str) -> tuple[float, float]:
    walls, peaks = zip(
        *(
            run_measured([str(BIN / "dbt"), *step, "--target", "bench", "--profiles-dir", str(project)], env, project)
            for step in STEPS_OF_MODE[mode]
        ),
        strict=True,
    )
    return sum(walls), max(peaks)


def ours(project: Path, env: dict[str, str], mode: str) -> tuple[float, float]:
    command = ["prefect_flows/pipeline.py", "--target", "bench", "--project-dir", str(project), "--mode", mode]
    return run_measured([sys.executable, *command], env, REPO)


def prefect_dbt(project: Path, env: dict[str, str], mode: str) -> tuple[float, float]:
    steps = json.dumps(STEPS_OF_MODE[mode])
    return run_measured([sys.executable, "-c", PREFECT_DBT_FLOW, str(project), steps], env, project)


def count_nodes(project: Path, env: dict[str, str]) -> int:
    """Nodes the steps execute (seeds, snapshots, models, tests), from dbt's own listing."""
    listed = subprocess.run(
        [str(BIN / "dbt"), "ls", "--resource-types", "seed", "snapshot", "model", "test", "unit_test",
         "--profiles-dir", str(project), "--target", "bench", "--output", "name", "--quiet"],
        cwd=project, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return len([line for line in listed.splitlines() if line.strip()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=500, help="models in the synthetic project (default 500)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three contenders (default 3)")
    parser.add_argument("--project-dir", type=Path, help="benchmark this dbt project instead of a synthetic one")
    parser.add_argument("--skip-prefect-dbt", action="store_true", help="leave prefect-dbt's runner out")
    parser.add_argument(
        "--mode", choices=sorted(STEPS_OF_MODE), default="steps", help="the pipeline's mode, and the same dbt commands"
    )
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="dbt-bench-", ignore_cleanup_errors=True) as temporary,
        local_prefect_server(Path(temporary) / "prefect-home") as (_, api),
    ):
        work = Path(temporary)
        source = args.project_dir.resolve() if args.project_dir else generate_project(work / "synthetic", args.models)
        env = {
            **os.environ,
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(work / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PIPELINE_ENVIRONMENTS_FILE": str(work / "environments.yaml"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        contenders: dict[str, Contender] = {
            "raw dbt": raw_dbt,
            "ours": ours,
        }
        if not args.skip_prefect_dbt:
            contenders["prefect-dbt"] = prefect_dbt
        database = {name: work / f"{name.replace(' ', '-')}.duckdb" for name in contenders}
        projects = {name: copy_project(source, work / name.replace(" ", "-"), database[name]) for name in contenders}
        bench = {"adapter": "duckdb", "path": str(database["ours"]), "threads": 1}
        environments = {"defaults": {"dbt_project_dir": str(projects["ours"])}, "environments": {"bench": bench}}
        (work / "environments.yaml").write_text(yaml.safe_dump(environments))
        subprocess.run(
            [sys.executable, "-m", "infrastructure.setup_profiles", "--blocks-only"],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
        nodes = count_nodes(projects["raw dbt"], env)
        print(f"{nodes} nodes ({source}); {args.mode} mode; {args.rounds} rounds; Prefect API {api}")

        measures = {name: Measure() for name in contenders}
        for round_number in range(1, args.rounds + 1):
            for name, contender in contenders.items():
                database[name].unlink(missing_ok=True)
                wall, peak = contender(projects[name], env, args.mode)
                measures[name].walls.append(wall)
                measures[name].peaks.append(peak)
                print(f"  round {round_number} {name:<12} {wall:7.1f} s  {peak:6.0f} MiB", flush=True)
        report(measures, nodes)


def report(measures: dict[str, Measure], nodes: int) -> None:
    raw = measures["raw dbt"]
    print(f"\n{'contender':<12} {'wall (s)':>9} {'x raw':>7} {'peak MiB':>9} {'x raw':>7} {'ms/node vs raw':>15}")
    summary: dict[str, object] = {"nodes": nodes}
    for name, measure in measures.items():
        per_node = (measure.wall - raw.wall) / nodes * 1000
        print(
            f"{name:<12} {measure.wall:9.1f} {measure.wall / raw.wall:7.2f} {measure.peak:9.0f} "
            f"{measure.peak / raw.peak:7.2f} {per_node:15.1f}"
        )
        summary[name] = {
            "wall_s": round(measure.wall, 2), "wall_ratio": round(measure.wall / raw.wall, 3),
            "peak_mib": round(measure.peak), "peak_ratio": round(measure.peak / raw.peak, 3),
            "marginal_ms_per_node": round(per_node, 2),
        }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
