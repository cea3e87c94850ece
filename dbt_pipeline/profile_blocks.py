"""prefect-dbt's blocks, as the setup creates them and the doctor and tests read them.

The seed's contract names prefect-dbt's `DbtCliProfile`, `BigQueryTargetConfigs` and prefect-gcp's
`GcpCredentials` blocks. Importing them costs ~180 MB and seconds (prefect-gcp pulls in Google's
clients and pandas), so the flow does not: it reads the same blocks as data (`dbt_pipeline.blocks`).
"""

from __future__ import annotations

import warnings
from typing import Any, TypeAlias

from prefect.blocks.core import Block
from prefect.client.orchestration import get_client

from dbt_pipeline.blocks import load_block

# prefect-dbt marks prefect_dbt.cli deprecated in favour of prefect_dbt.core, which has no block for
# a profile. The blocks are what our users load by name, so we keep them and silence the warning.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="prefect_dbt.cli is deprecated", category=UserWarning)
    from prefect_dbt.cli import BigQueryTargetConfigs, DbtCliProfile, TargetConfigs

__all__ = [
    "AnyTargetConfigs",
    "BigQueryTargetConfigs",
    "DbtCliProfile",
    "TargetConfigs",
    "configs_data",
    "load_dbt_cli_profile",
]

AnyTargetConfigs: TypeAlias = TargetConfigs | BigQueryTargetConfigs


def configs_data(configs: AnyTargetConfigs) -> dict[str, Any]:
    """Target configs as the data `dbt_pipeline.profiles.profile_outputs` renders (secrets revealed)."""
    data: dict[str, Any] = configs.model_dump(mode="json", by_alias=True, context={"include_secrets": True})
    return data


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
