"""What every warehouse adapter provides: its settings, its blocks, its dbt profile, its checks.

An environment of the environments file is an instance of one adapter's class (`DuckDBEnvironment`,
`BigQueryEnvironment`...): the class validates the environment's settings and knows everything the
pipeline does differently on that warehouse, so the setup, the flow and the doctor never test which
warehouse they are on. cosmos's `BaseProfileMapping` plays the same part for Airflow.

The stages an adapter takes part in, in the order a target meets them:

- setup: `target_configs` (the prefect-dbt block data), `plan_blocks` (blocks of its own, e.g.
  BigQuery's credentials), `check_before_run` (what a run would trip on, refused beforehand);
- run: `profile_outputs` (profiles.yml from the block's data), `run_secrets` (what the profile reads
  with env_var()), `prepare_run`, `finish_run`;
- doctor: `check_credentials`, `connection_check_skipped`.

Heavy client libraries (prefect-dbt, prefect-gcp, Google's clients) are imported inside the methods
that need them: validating a file or rejecting a typo must not pay for them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from dbt_pipeline.settings import (
    NOTIFICATION_BLOCK_PATTERN,
    Count,
    EnvironmentName,
    OnStaleSource,
    RunMode,
    Settings,
    resolve_path,
)
from dbt_pipeline.state_store import is_url, local_folder, location_problem

if TYPE_CHECKING:
    from prefect.blocks.core import Block
    from prefect_dbt.cli import TargetConfigs

    from dbt_pipeline.environments import Environments


# Where a target's last good state is kept when its environment sets no state_store: relative to the
# environments file's directory, so `.pipeline/state/` at the repository root for the shipped file.
DEFAULT_STATE_STORE = Path("../.pipeline/state")


class BlockPlanner(Protocol):
    """The setup's plan of blocks, as an adapter adds its own blocks to it."""

    notes: list[str]

    def want(self, name: str, desired: Block) -> Block:
        """Plan `desired` under `name`; the instance other blocks should reference."""
        ...


class WarehouseEnvironment(Settings, ABC):
    """One environment of the file, on one warehouse: what every environment has, and the adapter's duties.

    A subclass declares `adapter: Literal["<dbt adapter type>"]` (the key users write) and its own
    settings as pydantic fields, and implements the abstract methods.
    """

    adapter: str
    name: EnvironmentName = Field(description="The target name, taken from the environment's key.")
    threads: Count = Field(default=1, description="dbt threads: how many nodes run at once.")
    dbt_project_dir: Path = Field(description="The dbt project this environment runs.")
    mode: RunMode = Field(
        default="steps",
        description=(
            "How a run executes the nodes: `steps` (seed, snapshot, run, then test) or `build` (one dbt build: "
            "each model's tests right after it, a failure skips only its descendants)."
        ),
    )
    on_stale_source: OnStaleSource = Field(
        default="warn",
        description=(
            "When the project declares source freshness and a source is past its error_after: `warn`, `skip` "
            "(leave out every node built on it) or `fail` (fail the run before building anything)."
        ),
    )
    notification_block: str | None = Field(
        default=None,
        pattern=NOTIFICATION_BLOCK_PATTERN,
        description="Notification block alerted on failure: a Slack webhook's name, or `<block type slug>/<name>`.",
    )
    notify_on_success: bool = Field(default=False, description="Also send a summary when a run succeeds.")
    run_timeout_seconds: Count | None = Field(
        default=None, description="Stop a run that takes longer (its query cancelled) and fail it; none by default."
    )
    step_timeout_seconds: Count | None = Field(
        default=None, description="Stop a dbt step that takes longer (its query cancelled) and fail the run."
    )
    takeover_after_seconds: int = Field(
        default=60,
        strict=True,
        ge=20,
        description=(
            "How long a run that holds the target may be silent (killed, or cut off from the Prefect API) "
            "before the next run takes the target over; a run cut off for 3/4 of it stops itself first."
        ),
    )
    state_store: str | None = Field(
        default=None,
        min_length=1,
        validate_default=True,
        description=(
            "Where the target's last good state (dbt's manifest.json, run_results.json, sources.json) is kept: "
            "a folder, or an fsspec URL such as gs://bucket/prefix; relative paths are relative to the "
            "environments file. Unset: the folder ../.pipeline/state next to the environments file."
        ),
    )

    _resolve_project_dir = field_validator("dbt_project_dir")(resolve_path)

    @field_validator("state_store")
    @classmethod
    def _resolve_state_store(cls, value: str | None, info: ValidationInfo) -> str:
        """A folder becomes absolute (anchored at the environments file, the default included); a URL is checked.

        Once validated the field always holds the location, so that a copy made from the model's data
        (`model_dump`, a flow parameter) means the same place wherever it is read.
        """
        if value is not None and is_url(value):
            problem = location_problem(value)
            if problem is not None:
                raise PydanticCustomError("state_store", "{problem}", {"problem": problem})
            folder = local_folder(value)
            if folder is None:
                return value
        else:
            folder = DEFAULT_STATE_STORE if value is None else Path(value).expanduser()
        resolved = resolve_path(folder, info)
        assert resolved is not None  # resolve_path returns None for None only
        return str(resolved)

    @property
    def state_location(self) -> Path | str:
        """Where this target's last good state is kept: a local folder, or an fsspec URL (dbt_pipeline.state_store)."""
        location = self.state_store if self.state_store is not None else str(DEFAULT_STATE_STORE.resolve())
        folder = local_folder(location)
        return location if folder is None else folder

    @property
    def profile_block_name(self) -> str:
        """The `DbtCliProfile` block the flow loads for this target."""
        return f"dbt-cli-profile-{self.name}"

    # --- setup

    @abstractmethod
    def target_configs(self, environments: Environments) -> TargetConfigs:
        """The prefect-dbt target configs block of this environment (`environments`: the whole file).

        Raises `TargetSkipped` when this machine lacks what the block needs (e.g. a GCP project).
        """

    def block_names(self, environments: Environments) -> list[str]:
        """The blocks the setup creates for this environment, dependencies first."""
        return [self.profile_block_name]

    def plan_blocks(self, configs: TargetConfigs, plan: BlockPlanner, environments: Environments) -> TargetConfigs:
        """Plan the blocks `configs` depends on; return the configs the profile block should hold."""
        return configs

    def check_before_run(self, outputs: Mapping[str, Any], *, source: Path | None = None) -> None:
        """Refuse, with the file, the key and the fix, what would fail only once a flow run started.

        `outputs` is the profile a run will use; `source` the environments file. Nothing by default.
        """

    # --- run

    @staticmethod
    def profile_outputs(configs: Mapping[str, Any], *, keyfile: Path | None = None) -> dict[str, Any]:
        """The `outputs.<target>` mapping of profiles.yml, from the data of a target configs block.

        Data, not prefect-dbt's classes: the flow renders a run's profile without importing them.
        `keyfile`, for the local profiles.yml, replaces a secret in the block by the file that holds it.
        By default the adapter's settings are the block's `extras`, next to type, schema and threads.
        """
        return {
            "type": configs["type"],
            "schema": configs.get("schema", configs.get("schema_")),
            "threads": configs["threads"],
            **(configs.get("extras") or {}),
        }

    def run_secrets(self) -> dict[str, str]:
        """The variables the profile reads with env_var() that the process does not have yet."""
        return {}

    def prepare_run(self, outputs: Mapping[str, Any]) -> None:
        """Anything the warehouse needs before dbt connects (a run calls it with its profile)."""

    def finish_run(self) -> None:
        """Release what the run's process still holds of the warehouse once its dbt steps are over.

        Called while the run still holds its target, so that the next run finds the warehouse free.
        """

    def exclusive_resource(self) -> str | None:
        """What only one run at a time may write, whatever its target: another environment that names the same
        one shares this one's slot. None when runs on different targets cannot collide (separate datasets)."""
        return None

    def built_data_ends_with_the_run(self) -> str | None:
        """Why what a run builds is gone when the run ends (DuckDB's `:memory:`), or None: it stays there.

        A next run then finds nothing to compare with (--changed-only, --state-from) or to resume
        (--retry-failed), and nothing is kept as the target's last good state.
        """
        return None

    def state_store_options(self, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """The fsspec options of this target's state store (e.g. credentials for a bucket), from its profile."""
        return {}

    # --- doctor

    @abstractmethod
    def check_credentials(self, configs: Mapping[str, Any]) -> str:
        """Check the credentials in the profile block's target configs (data); say what they are.

        Raises `CheckFailedError` (with its fix) when they cannot work.
        """

    def connection_check_skipped(self, outputs: Mapping[str, Any]) -> str | None:
        """Why the doctor must not connect (connecting would change something), or None to connect."""
        return None
