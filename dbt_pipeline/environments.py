"""The environments file: the single source of truth for where and how dbt runs.

`infrastructure/environments.yaml` is read by the setup (blocks and profiles.yml), by the flow
(known targets, dbt project per target) and by Terraform (datasets, locations, labels), so an
environment is declared once. Adding one is a stanza of YAML, never code.

Relative paths in the file are resolved against the file's own directory, so the file means the
same thing whatever directory a command is started from.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dbt_pipeline.errors import ConfigError, UnknownTargetError

ENVIRONMENTS_FILE_VARIABLE = "PIPELINE_ENVIRONMENTS_FILE"
DEFAULT_ENVIRONMENTS_FILE = Path(__file__).resolve().parents[1] / "infrastructure" / "environments.yaml"

# Prefect block names allow lowercase letters, digits and dashes; an environment name becomes part
# of block names (dbt-cli-profile-{env}), of file names and of a command line, so nothing else.
ENVIRONMENT_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
EnvironmentName = Annotated[str, Field(pattern=ENVIRONMENT_NAME_PATTERN)]

# https://cloud.google.com/bigquery/docs/datasets#dataset-naming
DATASET_PATTERN = r"^[A-Za-z0-9_]{1,1024}$"
DatasetName = Annotated[str, Field(pattern=DATASET_PATTERN)]
# https://cloud.google.com/resource-manager/docs/creating-managing-projects#before_you_begin
GCP_PROJECT_PATTERN = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"
GcpProjectId = Annotated[str, Field(pattern=GCP_PROJECT_PATTERN)]
URL_PATTERN = r"^https?://"
# A notification block: a Slack webhook block's name, or `<block type slug>/<name>`.
NOTIFICATION_BLOCK_PATTERN = r"^([a-z0-9-]+/)?[a-z0-9][a-z0-9-]*$"
SECRET_VARIABLE_PATTERN = r"^DBT_ENV_SECRET_[A-Z0-9_]+$"  # noqa: S105 - a name pattern, not a password
# A whole number, not a boolean or a string that looks like one (YAML's `true` is not 1 thread).
Count = Annotated[int, Field(strict=True, gt=0)]

# A configuration uses a few anchors (a shared block of settings, `<<: *defaults`) and a few levels of
# nesting. Past these bounds the file is refused while it is read, before anything expands it: the values
# an alias bomb stands for (9 levels of 10 aliases: 10^9) would otherwise be walked by the validation
# and printed in its message, costing minutes and gigabytes; deep nesting would exhaust Python's stack.
MAX_ALIAS_VALUES = 10_000  # values all the aliases of a file may stand for, together
MAX_NESTING = 32

# What each pattern means, in words, for error messages.
PATTERN_RULES = {
    ENVIRONMENT_NAME_PATTERN: (
        "use lowercase letters, digits and dashes, starting with a letter (it becomes part of block names)"
    ),
    DATASET_PATTERN: "a BigQuery dataset name: letters, digits and underscores only",
    GCP_PROJECT_PATTERN: "a GCP project id: 6 to 30 lowercase letters, digits and dashes, starting with a letter",
    URL_PATTERN: "a URL starting with http:// or https://",
    NOTIFICATION_BLOCK_PATTERN: (
        "a block name (lowercase letters, digits and dashes), optionally prefixed by its block type slug and /"
    ),
    SECRET_VARIABLE_PATTERN: "a variable name starting with DBT_ENV_SECRET_ (dbt scrubs those from its logs)",
}


class _Settings(BaseModel):
    """Strict and immutable: an unknown key is an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _resolve_path(value: Path | None, info: ValidationInfo) -> Path | None:
    """Anchor a relative path at the environments file's directory (passed as context)."""
    if value is None or value.is_absolute():
        return value
    base_dir = (info.context or {}).get("base_dir", Path.cwd())
    return (Path(base_dir) / value).resolve()


class _Environment(_Settings):
    """What every environment has, whatever its warehouse."""

    name: EnvironmentName = Field(description="The target name, taken from the environment's key.")
    threads: Count = Field(default=1, description="dbt threads: how many nodes run at once.")
    dbt_project_dir: Path = Field(description="The dbt project this environment runs.")
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

    _resolve_project_dir = field_validator("dbt_project_dir")(_resolve_path)

    @property
    def profile_block_name(self) -> str:
        """The `DbtCliProfile` block the flow loads for this target."""
        return f"dbt-cli-profile-{self.name}"


class DuckDBEnvironment(_Environment):
    """A local DuckDB file: the embedded default, no account and no network needed."""

    adapter: Literal["duckdb"]
    path: Path = Field(description="The DuckDB database file (created on first run).")
    schema_: str = Field(default="main", alias="schema", min_length=1)

    _resolve_database_path = field_validator("path")(_resolve_path)


class BigQueryEnvironment(_Environment):
    """A BigQuery dataset: production."""

    adapter: Literal["bigquery"]
    project: GcpProjectId | None = Field(
        default=None, description="GCP project; falls back to gcp.project, then GOOGLE_CLOUD_PROJECT."
    )
    dataset: DatasetName
    location: str = Field(default="US", min_length=2)
    job_execution_timeout_seconds: Count = 300
    job_retries: Annotated[int, Field(ge=0)] = 1
    maximum_bytes_billed: Count | None = Field(
        default=None, description="Queries that would bill more bytes fail instead of running."
    )
    priority: Literal["interactive", "batch"] = "interactive"
    table_expiration_days: Count | None = Field(
        default=None, description="Default table expiration Terraform sets on the dataset."
    )
    api_endpoint: str | None = Field(
        default=None,
        pattern=URL_PATTERN,
        description="Another BigQuery API endpoint, e.g. a local emulator in tests; unset in production.",
    )
    labels: dict[str, str] = Field(default_factory=dict)


class PostgresEnvironment(_Environment):
    """A PostgreSQL database: for teams that self-host their warehouse."""

    adapter: Literal["postgres"]
    host: str = Field(default="localhost", min_length=1)
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    user: str = Field(min_length=1)
    database: str = Field(min_length=1)
    schema_: str = Field(default="public", alias="schema", min_length=1)
    password_env_var: str = Field(
        default="DBT_ENV_SECRET_POSTGRES_PASSWORD",
        pattern=SECRET_VARIABLE_PATTERN,
        description="Variable holding the password; dbt scrubs DBT_ENV_SECRET_* values from its logs.",
    )
    password_secret_block: str | None = Field(
        default=None, description="A Prefect Secret block holding the password, read at run time."
    )


AnyEnvironment = DuckDBEnvironment | BigQueryEnvironment | PostgresEnvironment
Environment = Annotated[AnyEnvironment, Field(discriminator="adapter")]


class GcpSettings(_Settings):
    """Google Cloud settings shared by the BigQuery environments."""

    project: GcpProjectId | None = None
    credentials_block: EnvironmentName = "gcp-credentials"
    service_account_key_file: Path | None = Field(
        default=None, description="Service-account key; GOOGLE_APPLICATION_CREDENTIALS wins over it."
    )

    _resolve_key_file = field_validator("service_account_key_file")(_resolve_path)


class Defaults(_Settings):
    """Values an environment inherits unless it sets its own."""

    dbt_project_dir: Path = Path("../dbt")


class Environments(_Settings):
    """The whole environments file, validated."""

    source: Path = Field(description="The file these environments were read from.")
    defaults: Defaults = Field(default_factory=Defaults)
    gcp: GcpSettings = Field(default_factory=GcpSettings)
    environments: dict[EnvironmentName, Environment] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _inherit_defaults(cls, data: Any) -> Any:
        """Give each environment its name (from its key) and the defaults it does not override."""
        if not isinstance(data, dict) or not isinstance(data.get("environments"), dict):
            return data
        defaults = data.get("defaults") or {}
        project_dir = (
            defaults.get("dbt_project_dir", Defaults().dbt_project_dir) if isinstance(defaults, dict) else None
        )
        environments = {}
        for name, settings in data["environments"].items():
            if isinstance(settings, dict):
                settings = {"name": name, "dbt_project_dir": project_dir, **settings}
            environments[name] = settings
        return {**data, "environments": environments}

    @property
    def names(self) -> list[str]:
        """The declared targets, in file order."""
        return list(self.environments)

    def get(self, name: str) -> AnyEnvironment:
        """Return the environment called `name`, or say which ones exist."""
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(self.names)
            hint = _did_you_mean(name, self.names)
            msg = f"Unknown target {name!r}{hint}. Known targets in {self.source}: {known}."
            raise UnknownTargetError(msg) from None

    def __iter__(self) -> Iterator[AnyEnvironment]:  # type: ignore[override]
        return iter(self.environments.values())


def target_concurrency_limit(target: str) -> str:
    """The Prefect global concurrency limit that lets one run at a time use `target`."""
    return f"dbt-target-{target}"


def environments_file_path() -> Path:
    """The environments file in use: $PIPELINE_ENVIRONMENTS_FILE, else the repository's own."""
    return Path(os.environ.get(ENVIRONMENTS_FILE_VARIABLE) or DEFAULT_ENVIRONMENTS_FILE)


def check_database_folder(
    environment: AnyEnvironment, *, source: Path | None = None, database: str | Path | None = None
) -> None:
    """Refuse a DuckDB file whose folder cannot be created, naming the file, the key and the fix.

    The run creates the file's missing folders (profiles.ensure_database_dir) and DuckDB the file,
    but only once a flow run has started: a path under a file (`../README.md/sub/x.duckdb`) or in a
    folder this user cannot write would fail there, with a raw OSError. The nearest existing folder
    tells beforehand, creating nothing. `database` is the path a run will use (its profile block's),
    by default the environment's own; `source` the environments file, by default the one in use.
    """
    if not isinstance(environment, DuckDBEnvironment):
        return
    database = Path(database if database is not None else environment.path).expanduser()
    problem = None if str(database) == ":memory:" else _database_folder_problem(database)
    if problem is None:
        return
    key = f"environments.{environment.name}.path"
    msg = (
        f"{(source or environments_file_path()).resolve()} is invalid:\n"
        f"  - {key}: cannot create the DuckDB file {database}: {problem}. Point {key} at a file in a folder "
        f"you can write (missing folders are created), then run the setup again: "
        f"uv run python -m infrastructure.setup_profiles --target {environment.name}"
    )
    raise ConfigError(msg)


def _database_folder_problem(database: Path) -> str | None:
    """Why the folders of `database` cannot be created, or None: its nearest existing ancestor decides."""
    try:
        if database.is_dir():
            return f"{database} is a folder"
        existing = next(parent for parent in database.parents if parent.exists())
    except OSError as error:  # a folder on the way that this user may not search (EACCES)
        return f"{error.filename} cannot be read ({error.strerror})"
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user"
    return None


def load_environments(path: Path | None = None) -> Environments:
    """Read and validate the environments file; any problem is a `ConfigError` naming key and fix."""
    path = (path or environments_file_path()).resolve()
    data = _read_yaml(path)
    if not isinstance(data, dict):
        msg = f"{path}: expected a mapping with an 'environments' key, got {type(data).__name__}."
        raise ConfigError(msg + " See infrastructure/environments.yaml in the repository for an example.")
    try:
        return Environments.model_validate({**data, "source": path}, context={"base_dir": path.parent})
    except ValidationError as error:
        raise ConfigError(_describe(error, path, data)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys, which PyYAML would silently overwrite.

    A merge key (`<<: *defaults`) is not a key of its own: the keys it brings may be overridden, and
    SafeLoader's own construct_mapping merges them.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is declared twice; remove or rename one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _BoundedLoader(_UniqueKeyLoader):
    """A safe YAML loader that bounds what aliases stand for and how deep values nest.

    It counts while composing, where an alias is one reference to a node composed earlier: the
    count grows with the values each alias stands for (its node, aliases inside it expanded), so a
    bomb is refused after a few thousand values, in milliseconds, before any Python object is built.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._values: dict[int, int] = {}  # id of each composed node -> its values, aliases expanded
        self._aliased = 0  # values the aliases read so far stand for
        self._where: list[Any] = []  # the keys (nodes) and indexes from the root to the node composed

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        is_alias = self.check_event(yaml.AliasEvent)
        mark: yaml.Mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # untyped in the stubs
        self._where.append(index)
        try:
            if len(self._where) > MAX_NESTING:
                raise _BoundExceededError(
                    f"values nest more than {MAX_NESTING} levels deep",
                    "an environment's settings nest 2 or 3 levels: flatten the value",
                    mark,
                    self._where,
                )
            node = super().compose_node(parent, index)
            values = self._values.get(id(node)) if node is not None else 0
            if is_alias:
                if values is None:  # its anchor is still being composed: it contains itself
                    raise _BoundExceededError(
                        "an alias refers to the value that contains it", "remove the alias", mark, self._where
                    )
                self._aliased += values
                if self._aliased > MAX_ALIAS_VALUES:
                    raise _BoundExceededError(
                        f"the file's aliases stand for more than {MAX_ALIAS_VALUES:,} values",
                        "a configuration needs a few anchors at most: write the values out, or share each "
                        "block of settings through one anchor",
                        mark,
                        self._where,
                    )
            elif node is not None:
                self._values[id(node)] = 1 + sum(self._values[id(child)] for child in _children(node))
            return node
        finally:
            self._where.pop()


class _BoundExceededError(yaml.MarkedYAMLError):
    """The file exceeds a bound of `_BoundedLoader`: what, where (a dotted key and a line), and the fix."""

    def __init__(self, problem: str, fix: str, mark: yaml.Mark, where: list[Any]) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        keys = [
            f"[{item}]" if isinstance(item, int) else f".{item.value}"
            for item in where
            if isinstance(item, int | yaml.ScalarNode)
        ]
        self.key = "".join(keys).lstrip(".") or "(top level)"
        self.line = mark.line + 1
        self.fix = fix


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        msg = (
            f"Environments file not found: {path}. Create it (copy infrastructure/environments.yaml "
            f"from the repository) or point ${ENVIRONMENTS_FILE_VARIABLE} at yours."
        )
        raise ConfigError(msg)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        msg = f"{path} is not UTF-8 text (byte {error.start}): save it as UTF-8."
        raise ConfigError(msg) from None
    if not text.strip():
        msg = f"{path} is empty: declare at least one environment under 'environments:'."
        raise ConfigError(msg)
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except _BoundExceededError as error:
        msg = f"{path} is refused at {error.key} (line {error.line}): {error.problem}. Fix: {error.fix}."
        raise ConfigError(msg) from None
    except yaml.YAMLError as error:
        msg = f"{path} is not valid YAML: {error}"
        raise ConfigError(msg) from None


def _describe(error: ValidationError, path: Path, data: Mapping[str, Any]) -> str:
    """Turn pydantic's report into one line per problem: file, dotted key, what is wrong, the fix."""
    lines = [f"{path} is invalid:"]
    seen: set[str] = set()
    for problem in error.errors():
        # pydantic marks a mapping key's own problem with "[key]": the user knows it as the key itself.
        parts = [str(part) for part in problem["loc"] if part not in ("duckdb", "bigquery", "postgres")]
        location = [part for part in parts if part != "[key]"]
        key = ".".join(location) or "(top level)"
        if key in seen:
            continue
        seen.add(key)
        if problem["type"] == "string_pattern_mismatch":
            rule = PATTERN_RULES.get(str((problem.get("ctx") or {}).get("pattern")), "see the example file")
            lines.append(f"  - {key}: {problem['input']!r} is not allowed: {rule}.")
            continue
        if problem["type"] == "extra_forbidden":
            allowed = _allowed_keys(location, data)
            hint = _did_you_mean(location[-1], allowed)
            lines.append(f"  - {key}: unknown key{hint}. Allowed here: {', '.join(sorted(allowed))}.")
        elif problem["type"] == "union_tag_invalid":
            adapter = problem["input"].get("adapter")
            lines.append(f"  - {key}.adapter: unknown adapter {adapter!r}; use duckdb, bigquery or postgres.")
        elif problem["type"] == "missing":
            lines.append(f"  - {key}: required, but missing; add it.")
        elif problem["type"] == "union_tag_not_found":
            lines.append(f"  - {key}: missing 'adapter'; use duckdb, bigquery or postgres.")
        else:
            lines.append(f"  - {key}: {problem['msg']} (got {problem['input']!r}).")
    return "\n".join(lines)


def _allowed_keys(location: list[str], data: Mapping[str, Any]) -> list[str]:
    """The keys the model accepts where an unknown key was found."""
    parent = location[:-1]
    if not parent:
        return [name for name in Environments.model_fields if name != "source"]
    if parent[0] in ("defaults", "gcp") and len(parent) == 1:
        model: type[BaseModel] = Defaults if parent[0] == "defaults" else GcpSettings
        return list(model.model_fields)
    if parent[0] == "environments" and len(parent) == 2:
        adapter = (data.get("environments") or {}).get(parent[1], {}).get("adapter")
        models: dict[str, type[BaseModel]] = {"bigquery": BigQueryEnvironment, "postgres": PostgresEnvironment}
        model = models.get(adapter, DuckDBEnvironment)
        return [field.alias or name for name, field in model.model_fields.items() if name != "name"]
    return []


def _did_you_mean(word: str, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""
