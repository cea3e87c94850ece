"""The warehouses the pipeline runs on: one module per dbt adapter, each defining one environment class.

Every module of this package is imported here and every `WarehouseEnvironment` subclass it defines
registered under the `adapter:` value it accepts, so adding a warehouse is adding a module (see the
README's "Adding an adapter"); the environments file, the setup, the flow and the doctor find it here.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import get_args

from dbt_pipeline.adapters.base import BlockPlanner, WarehouseEnvironment

__all__ = ["ADAPTERS", "BlockPlanner", "WarehouseEnvironment", "adapter_choices", "adapter_class"]


def _adapter_name(environment_class: type[WarehouseEnvironment]) -> str:
    (name,) = get_args(environment_class.model_fields["adapter"].annotation)
    return str(name)


def _discover() -> dict[str, type[WarehouseEnvironment]]:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda found: found.name):
        importlib.import_module(f"{__name__}.{module.name}")
    # The subclasses are the adapters' concrete classes, whatever mypy infers from the abstract base.
    return {_adapter_name(cls): cls for cls in WarehouseEnvironment.__subclasses__()}  # type: ignore[type-abstract]


ADAPTERS: dict[str, type[WarehouseEnvironment]] = _discover()


def adapter_class(adapter: str) -> type[WarehouseEnvironment]:
    """The environment class of the dbt adapter `adapter` (a profile's `type`), or a clear error."""
    try:
        return ADAPTERS[adapter]
    except KeyError:
        from dbt_pipeline.errors import ConfigError

        msg = f"No adapter {adapter!r} in this pipeline: use {adapter_choices()}."
        raise ConfigError(msg) from None


def adapter_choices() -> str:
    """The adapters, for messages: "bigquery, duckdb or postgres"."""
    *others, last = ADAPTERS
    return f"{', '.join(others)} or {last}" if others else last
