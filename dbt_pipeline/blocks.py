"""Reading the Prefect blocks the setup created, with errors that say how to create them."""

from __future__ import annotations

from typing import Any, TypeVar, cast

import httpx
from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from dbt_pipeline.errors import BlockNotFoundError, BlockTypeError
from dbt_pipeline.prefect_api import unreachable

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
        raise _not_found(name, block_class.get_block_type_name(), target) from None
    except (httpx.HTTPError, PrefectHTTPStatusError, OSError) as error:
        raise unreachable(error) from None


def load_notification_block(name: str, *, target: str | None = None) -> NotificationBlock:
    """The notification block `name`: `<block type slug>/<name>` for any type, a bare name for a Slack webhook."""
    if "/" in name:
        block: Block = load_block(Block, name, target=target)
    else:
        from prefect_slack import SlackWebhook  # only when alerting: it pulls in slack_sdk and aiohttp

        block = load_block(SlackWebhook, name, target=target)
    if not isinstance(block, NotificationBlock):
        msg = (
            f"Block {name!r} is a {type(block).__name__}, not a notification block: name a Slack webhook "
            "(slack-webhook/NAME) or another notification block in notification_block."
        )
        raise BlockTypeError(msg)
    return block


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
        raise _not_found(name, "dbt CLI Profile", target) from None
    except (httpx.HTTPError, PrefectHTTPStatusError, OSError) as error:
        raise unreachable(error) from None
    return dict(document.data)


def _not_found(name: str, type_name: str, target: str | None) -> BlockNotFoundError:
    setup = SETUP_COMMAND + (f" --target {target}" if target else "")
    return BlockNotFoundError(
        f"Prefect block {name!r} ({type_name}) not found on this Prefect API. Create it with: {setup}"
    )
