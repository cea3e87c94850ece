"""dbt run embedded (dbt_pipeline/embedded_dbt.py): the same behaviour as dbt's, without its embedded costs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dbt_common.behavior_flags import Behavior, BehaviorFlag, BehaviorFlagRendered

from dbt_pipeline import embedded_dbt

FLAG: BehaviorFlag = {"name": "some_new_behaviour", "default": False, "description": "off until 2.0"}


@pytest.fixture
def dbt_s_own_walk() -> Iterator[None]:
    """dbt's own `_default_source` for the test, as before `install()`."""
    installed = BehaviorFlagRendered._default_source
    BehaviorFlagRendered._default_source = staticmethod(embedded_dbt.DBT_DEFAULT_SOURCE)  # type: ignore[method-assign]
    try:
        yield
    finally:
        BehaviorFlagRendered._default_source = installed  # type: ignore[method-assign]


def flag_source() -> str:
    """The source dbt records for a flag declared here, as an adapter's flags are declared (dbt_common's Behavior)."""
    flag = Behavior([FLAG], user_overrides={}).some_new_behaviour
    return str(flag._behavior_change_event.flag_source)


def flag_source_under_exec() -> str:
    """As above, called from code that has no file (exec, runpy, xdist): where dbt's walk scans sys.modules."""
    scope: dict[str, object] = {"flag_source": flag_source}
    exec("found = flag_source()", scope)  # the point of the test
    return str(scope["found"])


@pytest.mark.parametrize("declare", [flag_source, flag_source_under_exec], ids=["plain", "under-exec"])
def test_a_flag_s_source_is_the_module_dbt_names(declare: object, dbt_s_own_walk: None) -> None:
    """The installed walk names the module dbt's own walk names: the one that declared the flags."""
    assert callable(declare)
    by_dbt = declare()
    embedded_dbt.install()
    assert declare() == by_dbt == __name__


def test_install_is_idempotent_and_keeps_a_flag_that_names_its_source() -> None:
    embedded_dbt.install()
    embedded_dbt.install()
    assert BehaviorFlagRendered._default_source is embedded_dbt.calling_module
    flag = Behavior([{**FLAG, "source": "dbt-some-adapter"}], user_overrides={}).some_new_behaviour
    assert flag._behavior_change_event.flag_source == "dbt-some-adapter"
