"""Reading the Prefect blocks the setup created, with errors that say how to create them."""

from __future__ import annotations

from typing import TypeVar, cast

import httpx
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL

from dbt_pipeline.errors import BlockNotFoundError, PrefectApiError
from dbt_pipeline.profiles import DbtCliProfile

SETUP_COMMAND = "uv run python -m infrastructure.setup_profiles --blocks-only"

BlockT = TypeVar("BlockT", bound=Block)


def load_block(block_class: type[BlockT], name: str, *, target: str | None = None) -> BlockT:
    """Load the block `name`, or explain that the setup must run first (and which setup)."""
    try:
        return cast(BlockT, block_class.load(name))
    except ValueError as error:
        if "Unable to find block document" not in str(error):
            raise
        setup = SETUP_COMMAND + (f" --target {target}" if target else "")
        msg = (
            f"Prefect block {name!r} ({block_class.get_block_type_name()}) not found on this Prefect API. "
            f"Create it with: {setup}"
        )
        raise BlockNotFoundError(msg) from None
    except (httpx.HTTPError, PrefectHTTPStatusError, OSError) as error:
        raise PrefectApiError(_unreachable(error)) from None


def load_dbt_cli_profile(name: str, *, target: str | None = None) -> DbtCliProfile:
    """Load a `DbtCliProfile` block with its target configs of the right type.

    prefect-dbt picks the target configs' class from a `block_type_slug` key that the API leaves out
    of a *named* nested block, so a profile referencing `bigquery-target-configs-{env}` loads it as
    plain `TargetConfigs`, without credentials. We reload the referenced block with its own class.
    """
    profile = load_block(DbtCliProfile, name, target=target)
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(name=name, block_type_slug=DbtCliProfile.get_block_type_slug())
    reference = (document.block_document_references or {}).get("target_configs")
    if reference and not reference["block_document"].get("is_anonymous"):
        referenced = reference["block_document"]
        configs_class = Block.get_block_class_from_key(referenced["block_type"]["slug"])
        profile.target_configs = load_block(configs_class, referenced["name"], target=target)
    return profile


def find_block(block_class: type[BlockT], name: str) -> BlockT | None:
    """The block `name` if it exists, else None (the setup's view: absent means "to create")."""
    try:
        if issubclass(block_class, DbtCliProfile):
            return cast(BlockT, load_dbt_cli_profile(name))
        return load_block(block_class, name)
    except BlockNotFoundError:
        return None


def _unreachable(error: Exception) -> str:
    api = PREFECT_API_URL.value() or "the ephemeral Prefect server"
    return (
        f"Cannot reach the Prefect API at {api}: {error}. Start it (`prefect server start`), "
        "or fix PREFECT_API_URL / your Prefect profile (`prefect config view`)."
    )
