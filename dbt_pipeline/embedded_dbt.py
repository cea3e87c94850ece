"""What dbt costs only because it runs inside a long-lived process, deep in Prefect's call stack, and its cure.

dbt_common names the module that declared each adapter behaviour flag (`BehaviorFlagRendered._default_source`,
used for the message dbt logs when the flag is off) by walking `inspect.stack()`, and it does so for every flag
of every adapter dbt creates, once per dbt command, even for a flag that names its source. `inspect.stack()`
reads the source lines of every frame, and for a frame it cannot map to a file (code run by `exec`, `python -m`'s
`<frozen runpy>`, a Prefect worker's flow-run process, xdist) `inspect.getmodule` scans all of `sys.modules`: 15 ms
a flag here with 2,600 modules loaded, 200 CPU-s of a test session's BigQuery runs. The dbt CLI starts with a
shallow stack and few modules; our runs start dbt under Prefect's task engine.

`install()` replaces that walk with one over the frames' globals, which gives the same name (the first module
on the stack other than dbt_common's) without reading a file. Our tests compare the two.
"""

from __future__ import annotations

import sys
from types import FrameType

from dbt_common import behavior_flags

DBT_DEFAULT_SOURCE = behavior_flags.BehaviorFlagRendered._default_source


def calling_module() -> str:
    """The first module on the call stack other than dbt_common's behaviour flags: what dbt's own walk returns."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if isinstance(name, str) and name != behavior_flags.__name__:
            return name
        frame = frame.f_back
    return "Unknown"


def install() -> None:
    """Use `calling_module` for behaviour flags that do not name their source (idempotent)."""
    behavior_flags.BehaviorFlagRendered._default_source = staticmethod(calling_module)  # type: ignore[method-assign]
