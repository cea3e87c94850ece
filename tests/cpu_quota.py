"""Half a core for a command and everything it starts, as on a machine whose cores are busy with other work.

Where the machine lets the tests set a CPU quota (a cgroup's `cpu` controller, as root in a container or
on CI), the command runs in a cgroup of its own limited to half of one core: as slow as beside a process
that keeps its core busy, without burning that core, which the rest of the suite then has. Elsewhere (a
developer's laptop without root) it shares its core with such a process, a spinner.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")
PERIOD_MICROSECONDS = 100_000
# Every process of the command runs on this core: with the quota, or with the spinner.
ONE_CORE = ("taskset", "--cpu-list", "0")


@contextmanager
def half_a_core(time_limit: float) -> Iterator[tuple[str, ...]]:
    """The prefix that runs a command on half of one core; whatever the command leaves running is killed after.

    `time_limit` bounds the spinner of the fallback, should the test's process die without stopping it."""
    cgroup = _new_cgroup()
    if cgroup is None:
        with _spinner(time_limit):
            yield ONE_CORE
        return
    try:
        yield (*ONE_CORE, sys.executable, "-c", _JOIN_AND_EXEC, str(cgroup / "cgroup.procs"))
    finally:
        _remove_cgroup(cgroup)


# Joins the cgroup, then becomes the command: every process it starts is in the cgroup too.
_JOIN_AND_EXEC = "import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); os.execvp(sys.argv[2], sys.argv[2:])"


def _new_cgroup() -> Path | None:
    """A cgroup limited to half a core (cgroup v1 or v2), or None if this machine does not let us make one."""
    name = f"pipeline-tests-{uuid.uuid4().hex[:8]}"
    for hierarchy, settings in _quota_hierarchies():
        cgroup = hierarchy / name
        try:
            cgroup.mkdir()
            for setting, value in settings.items():
                (cgroup / setting).write_text(value)
        except OSError:
            if cgroup.is_dir():
                cgroup.rmdir()
            continue
        return cgroup
    return None


def _quota_hierarchies() -> Iterator[tuple[Path, dict[str, str]]]:
    """Each hierarchy whose children have the cpu controller, with the settings of a half-core quota there."""
    quota = PERIOD_MICROSECONDS // 2
    if (CGROUP_V1_CPU / "cgroup.procs").is_file():  # v1: the controller's own hierarchy
        yield CGROUP_V1_CPU, {"cpu.cfs_period_us": str(PERIOD_MICROSECONDS), "cpu.cfs_quota_us": str(quota)}
    delegated = CGROUP_V2 / "cgroup.subtree_control"  # v2: only where the root delegates cpu to its children
    if (CGROUP_V2 / "cgroup.procs").is_file() and delegated.is_file() and "cpu" in delegated.read_text().split():
        yield CGROUP_V2, {"cpu.max": f"{quota} {PERIOD_MICROSECONDS}"}


def _remove_cgroup(cgroup: Path) -> None:
    """Kill what the command left in its cgroup (a temporary server, say), then remove the cgroup."""
    for _ in range(50):
        pids = [int(pid) for pid in (cgroup / "cgroup.procs").read_text().split()]
        if not pids:
            cgroup.rmdir()
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    raise RuntimeError(f"processes left in {cgroup} survive SIGKILL")


@contextmanager
def _spinner(time_limit: float) -> Iterator[None]:
    """A process that keeps core 0 busy (and stops by itself after `time_limit` seconds)."""
    spinner = subprocess.Popen(
        [*ONE_CORE, "timeout", str(time_limit), sys.executable, "-c", "while True: pass"], start_new_session=True
    )
    try:
        yield
    finally:
        # The whole group: killing `timeout` alone would leave its spinner running, orphaned, for good.
        os.killpg(spinner.pid, signal.SIGKILL)
        spinner.wait()
