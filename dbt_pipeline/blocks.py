"""Reading the Prefect blocks the setup created, with errors that say how to create them."""

from __future__ import annotations

from typing import Any, TypeVar, cast

import httpx
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL

from dbt_pipeline.errors import BlockNotFoundError, PrefectApiError

SETUP_COMMAND = "uv run python -m infrastructure.setup_profiles --blocks-only"
PROFILE_BLOCK_TYPE = "dbt-cli-profile"

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


def load_profile_data(name: str, *, target: str) -> dict[str, Any]:
    """The data of the `DbtCliProfile` block `name`, nested target configs and secrets included.

    The flow reads the block as data rather than through prefect-dbt's classes: the same block,
    without importing prefect-dbt and prefect-gcp into every run (see dbt_pipeline.profile_blocks).
    """
    try:
        with get_client(sync_client=True) as client:
            document = client.read_block_document_by_name(
                name=name, block_type_slug=PROFILE_BLOCK_TYPE, include_secrets=True
            )
    except ObjectNotFound:
        msg = (
            f"Prefect block {name!r} (dbt CLI Profile) not found on this Prefect API. "
            f"Create it with: {SETUP_COMMAND} --target {target}"
        )
        raise BlockNotFoundError(msg) from None
    except (httpx.HTTPError, PrefectHTTPStatusError, OSError) as error:
        raise PrefectApiError(_unreachable(error)) from None
    return dict(document.data)


def _unreachable(error: Exception) -> str:
    api = PREFECT_API_URL.value() or "the ephemeral Prefect server"
    return (
        f"Cannot reach the Prefect API at {api}: {error}. Start it (`prefect server start`), "
        "or fix PREFECT_API_URL / your Prefect profile (`prefect config view`)."
    )
