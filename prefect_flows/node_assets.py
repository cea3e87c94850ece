"""A dbt node's warehouse relation as a Prefect asset: the lineage of a run, in Prefect's own events.

Prefect 3 tracks assets through events: a task that materializes an asset emits
`prefect.asset.materialization.succeeded` for it, naming its upstream assets as related resources
(role `asset`) and the tool that built it (role `asset-materialized-by`), and one
`prefect.asset.referenced` per upstream asset (`prefect.context.AssetContext.emit_events`).
prefect-dbt's runner gets there by running each node as a `MaterializingTask`; we mirror nodes without
running a task per node (node_runs.py), so we build the same events ourselves, from the manifest:

- the asset key is the node's relation, as prefect-dbt writes it (`format_resource_id`): the adapter
  type, then the relation name without quotes, its dots as slashes (`duckdb://dev/main/orders`,
  `bigquery://project/dataset/table`), so a project moved from prefect-dbt's runner keeps its assets;
- its upstream assets are its dbt parents (sources included), seen through ephemeral models, which
  build no relation; a source, which dbt reads but never builds, is also `referenced` (see
  `materialization_events` for why only sources);
- its name, description and owner come from the project: the relation name, the node's description,
  `meta.owner` (prefect-dbt's rule) or else the owner of the node's dbt group;
- a node or parent whose `meta.prefect.enable_assets` is false is left out, as prefect-dbt leaves it out.

Everything here is a pure function of the manifest: node_runs.py decides when to emit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from dbt.artifacts.resources.types import NodeType
from dbt.contracts.graph.manifest import Manifest
from dbt.contracts.graph.nodes import ManifestNode, SourceDefinition
from prefect.assets import Asset, AssetProperties
from prefect.assets.core import MAX_ASSET_DESCRIPTION_LENGTH
from prefect.context import AssetContext
from prefect.events import Event
from prefect.settings import get_current_settings
from prefect.types.names import MAX_ASSET_KEY_LENGTH, RESTRICTED_ASSET_CHARACTERS

# The nodes that build a relation (prefect-dbt's MATERIALIZATION_NODE_TYPES); tests and the rest build none.
MATERIALIZED_TYPES = frozenset({NodeType.Model, NodeType.Seed, NodeType.Snapshot})
MATERIALIZED_BY = "dbt"  # the `asset-materialized-by` resource, as prefect-dbt names it
SUCCEEDED = "prefect.asset.materialization.succeeded"
REFERENCED = "prefect.asset.referenced"
# Related resources a materialization has besides its upstream assets: dbt, and its task run, flow run and flow.
_OWN_RELATED = 4

Node = ManifestNode | SourceDefinition


def asset_key(adapter_type: str, relation_name: str) -> str:
    """The asset key of a relation: prefect-dbt's `format_resource_id`, e.g. `duckdb://dev/main/orders`."""
    path = relation_name.replace('"', "").replace(".", "/")
    for character in RESTRICTED_ASSET_CHARACTERS:
        path = path.replace(character, "")
    return f"{adapter_type}://{path}"[:MAX_ASSET_KEY_LENGTH]


def builds_asset(node: Node) -> bool:
    """Whether a node is a relation dbt builds and the project lets Prefect track (not ephemeral, not disabled)."""
    return node.resource_type in MATERIALIZED_TYPES and bool(node.relation_name) and _assets_enabled(node)


def node_asset(node: Node, manifest: Manifest) -> Asset:
    """The asset of a node's relation, with the name, description and owner the project gives it."""
    if not node.relation_name:
        msg = f"{node.unique_id} has no relation: it is no asset"
        raise ValueError(msg)
    properties: dict[str, Any] = {"name": node.relation_name.replace('"', "").replace("`", "")}
    if node.description:
        description = node.description
        if len(description) > MAX_ASSET_DESCRIPTION_LENGTH:  # prefect-dbt's cut, so the asset is still valid
            description = description[: MAX_ASSET_DESCRIPTION_LENGTH - 3] + "..."
        properties["description"] = description
    owner = node_owner(node, manifest)
    if owner:
        properties["owners"] = [owner]
    return Asset(key=asset_key(_adapter_type(manifest), node.relation_name), properties=AssetProperties(**properties))


def node_owner(node: Node, manifest: Manifest) -> str | None:
    """Who owns a node: its `meta.owner` (a string, as prefect-dbt reads it), else its dbt group's owner."""
    owner = _meta(node).get("owner")
    if isinstance(owner, str) and owner:
        return owner
    group_name = getattr(node, "group", None)
    group = manifest.groups.get(f"group.{node.package_name}.{group_name}") if group_name else None
    if group is None:
        return None
    email = group.owner.email
    return group.owner.name or (email if isinstance(email, str) else ", ".join(email or ())) or None


def materialization_events(
    unique_id: str, manifest: Manifest, *, occurred: datetime, payload: Mapping[str, Any] | None = None
) -> list[Event]:
    """The events of a materializing task that succeeded, as Prefect's engine emits them, for the node `unique_id`.

    The node's `prefect.asset.materialization.succeeded`, related to its upstream assets and to dbt,
    after one `prefect.asset.referenced` per upstream asset dbt does not build (a source): the only
    event that describes such an asset (its name, description and owner). The engine references every
    upstream asset; an asset dbt builds is described by its own materialization, and the lineage is in
    the materializations' related assets, so those references would only double the events of a run
    (on 1,000 nodes, the server's writes made it slow to answer).

    As with the engine's, the run they belong to is not in them: Prefect's events worker relates each
    event to the task run and flow run of the context it was emitted in (and their flow, deployment and
    tags), so emit them in the node's task run context. None for a node that builds no asset (a test,
    an ephemeral model, a model opted out).
    """
    node = manifest.nodes.get(unique_id)
    if node is None or not builds_asset(node):
        return []
    # Room for dbt and the run's task run, flow run and flow, which the events worker adds.
    room = get_current_settings().server.events.maximum_related_resources - _OWN_RELATED
    parents = list(_relation_parents(node, manifest, set()))[:room]
    upstream = [node_asset(parent, manifest) for parent in parents]
    events = [
        Event(occurred=occurred, event=REFERENCED, resource=AssetContext.asset_as_resource(asset))
        for parent, asset in zip(parents, upstream, strict=True)
        if parent.resource_type not in MATERIALIZED_TYPES
    ]
    related = [AssetContext.asset_as_related(asset) for asset in upstream]
    related.append(AssetContext.related_materialized_by(MATERIALIZED_BY))
    resource = AssetContext.asset_as_resource(node_asset(node, manifest))
    events.append(
        Event(occurred=occurred, event=SUCCEEDED, resource=resource, related=related, payload=dict(payload or {}))
    )
    return events


def _relation_parents(node: Node, manifest: Manifest, seen: set[str]) -> Iterator[Node]:
    """The parents of a node that are relations (prefect-dbt's rule), looking through ephemeral models."""
    for parent_id in getattr(getattr(node, "depends_on", None), "nodes", ()):
        if parent_id in seen:
            continue
        seen.add(parent_id)
        parent: Node | None = manifest.nodes.get(parent_id) or manifest.sources.get(parent_id)
        if parent is None:
            continue
        if parent.resource_type == NodeType.Model and parent.config.materialized == "ephemeral":
            yield from _relation_parents(parent, manifest, seen)
        elif (parent.resource_type == NodeType.Source and parent.relation_name) or builds_asset(parent):
            yield parent  # a source is read whatever its `enable_assets`, as prefect-dbt reads it


def _meta(node: Node) -> dict[str, Any]:
    """A node's `meta`: dbt keeps it in the config (models, seeds, snapshots) or on the node (sources)."""
    return {**getattr(node, "meta", {}), **getattr(node.config, "meta", {})}


def _assets_enabled(node: Node) -> bool:
    """False when the project opts the node out of assets, as prefect-dbt reads it: `meta.prefect.enable_assets`."""
    prefect_config = _meta(node).get("prefect")
    return not isinstance(prefect_config, dict) or prefect_config.get("enable_assets", True) is not False


def _adapter_type(manifest: Manifest) -> str:
    adapter_type = manifest.metadata.adapter_type
    if not adapter_type:
        msg = "the manifest names no adapter type: asset keys need it"
        raise ValueError(msg)
    return adapter_type
