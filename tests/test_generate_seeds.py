"""The seed generator, dbt/scripts/generate_seeds.py: the shipped CSVs are what it writes, `--check`
names a stale file, and two runs write the same bytes. The script runs as a user runs it, in a
subprocess; only copies in temporary folders are ever written or edited, never dbt/seeds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "dbt" / "scripts" / "generate_seeds.py"
SEEDS = REPO / "dbt" / "seeds"


def generate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=120, check=False)


def seed_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("raw_*.csv"))}


def test_the_shipped_seeds_are_what_the_script_writes() -> None:
    result = generate("--check")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_check_fails_naming_an_edited_seed(tmp_path: Path) -> None:
    for path in SEEDS.glob("raw_*.csv"):
        shutil.copyfile(path, tmp_path / path.name)
    assert generate("--check", "--out", tmp_path).returncode == 0  # the copy is up to date
    edited = tmp_path / "raw_orders.csv"
    lines = edited.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = lines[1].replace(",", ";", 1)  # one character of the first data row
    edited.write_text("".join(lines), encoding="utf-8")

    result = generate("--check", "--out", tmp_path)

    assert result.returncode == 1
    assert result.stderr.strip() == "stale seed files: raw_orders.csv"
    assert edited.read_text(encoding="utf-8") == "".join(lines)  # --check never writes


def test_two_runs_write_identical_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"

    for out in (first, second):
        result = generate("--out", out)
        assert result.returncode == 0, result.stderr

    written = seed_bytes(first)
    assert sorted(written) == sorted(path.name for path in SEEDS.glob("raw_*.csv"))
    assert written == seed_bytes(second)
