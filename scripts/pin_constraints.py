"""Rewrite `[tool.uv] constraint-dependencies` in pyproject.toml from a fresh resolution.

Direct dependencies are pinned by hand in [project] and [dependency-groups]; this pins every
transitive one, so two installs a month apart get the same versions. It uses `uv pip compile`,
which, unlike uv.lock, records no package registry address. Run it after changing a pin:

    uv run python scripts/pin_constraints.py
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
BLOCK = re.compile(r"constraint-dependencies = \[\n.*?\n\]\n", re.DOTALL)
# The platforms of `[tool.uv] environments`, which uv adds to every pin: said once there is enough.
PLATFORMS = re.compile(r"( and \(| ; )?sys_platform == 'darwin' or sys_platform == 'linux'\)?$")


def resolve() -> list[str]:
    """Every package of the resolution (dev group included), as `name==version[ ; marker]`.

    One universal resolution for every Python that `requires-python` allows (3.11 to 3.13): where
    a package needs another version on a newer Python, its pins carry `python_version` markers.
    """
    output = subprocess.run(
        ["uv", "pip", "compile", str(PYPROJECT), "--group", "dev", "--universal", "--python-version", "3.11",
         "--no-header", "--no-annotate", "--quiet"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    pins = [line.strip() for line in output.splitlines() if "==" in line and not line.startswith(("#", "-"))]
    return [PLATFORMS.sub("", pin).replace(" ; ", "; ") for pin in pins]


def main() -> None:
    """Replace the constraint block of [tool.uv]."""
    pins = "".join(f'    "{pin}",\n' for pin in resolve())
    text = PYPROJECT.read_text(encoding="utf-8")
    if not BLOCK.search(text):
        raise SystemExit(f"{PYPROJECT} has no `constraint-dependencies = [...]` under [tool.uv] to update.")
    PYPROJECT.write_text(BLOCK.sub(lambda _: f"constraint-dependencies = [\n{pins}]\n", text), encoding="utf-8")
    print(f"{PYPROJECT}: {pins.count(chr(10))} constraints")


if __name__ == "__main__":
    main()
