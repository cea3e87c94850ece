"""The README's first command on a fresh clone, timed as a newcomer meets it.

For each round: a fresh clone of this repository, `uv sync` (timed apart: the issue's clock starts
once dependencies are installed), then, with a fresh PREFECT_HOME, no PREFECT_API_URL (Prefect's
temporary server, as in the README) and PYTHONDONTWRITEBYTECODE=1:

- first: `uv run python -m infrastructure.setup_profiles && uv run python prefect_flows/pipeline.py`
- second: `uv run python prefect_flows/pipeline.py` again.

Printed: each round, then the median of each; the last line is JSON.

    uv run python -m benchmarks.first_command              # 3 rounds
    uv run python -m benchmarks.first_command --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.harness import REPO

FIRST = "uv run python -m infrastructure.setup_profiles && uv run python prefect_flows/pipeline.py"
SECOND = "uv run python prefect_flows/pipeline.py"


def timed(command: str, cwd: Path, env: dict[str, str]) -> float:
    """Run a shell command line as a user types it; its wall seconds (exit on failure, with its output)."""
    started = time.perf_counter()
    # A shell, as the README's command line is one (`... && ...`), verbatim.
    result = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{command} failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return time.perf_counter() - started


def one_round(work: Path) -> dict[str, float]:
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "VIRTUAL_ENV"))}
    env.update(PREFECT_HOME=str(work / "prefect-home"), PYTHONDONTWRITEBYTECODE="1", UV_PYTHON_DOWNLOADS="never")
    return {
        "install_s": timed("uv sync -q", clone, env),
        "first_s": timed(FIRST, clone, env),
        "second_s": timed(SECOND, clone, env),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh clones to time (default 3)")
    args = parser.parse_args()
    rounds = []
    for number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="first-command-", ignore_cleanup_errors=True) as work:
            measured = one_round(Path(work))
        rounds.append(measured)
        print(f"  round {number}: " + "  ".join(f"{key} {value:6.1f}" for key, value in measured.items()), flush=True)
    medians = {key: round(statistics.median(r[key] for r in rounds), 1) for key in rounds[0]}
    print("median: " + "  ".join(f"{key} {value:6.1f}" for key, value in medians.items()))
    print(json.dumps({"rounds": len(rounds), **medians}))


if __name__ == "__main__":
    main()
