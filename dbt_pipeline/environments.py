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
from typing import TYPE_CHECKING, Annotated, Any, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from dbt_pipeline.adapters import ADAPTERS, WarehouseEnvironment, adapter_choices
from dbt_pipeline.adapters.bigquery import BigQueryEnvironment, GcpSettings
from dbt_pipeline.adapters.duckdb import DuckDBEnvironment
from dbt_pipeline.adapters.postgres import PostgresEnvironment
from dbt_pipeline.errors import ConfigError, UnknownTargetError
from dbt_pipeline.settings import PATTERN_RULES, EnvironmentName, Settings

__all__ = [
    "AnyEnvironment",
    "BigQueryEnvironment",
    "DuckDBEnvironment",
    "Environments",
    "GcpSettings",
    "PostgresEnvironment",
    "environments_file_path",
    "load_environments",
    "target_concurrency_limit",
]

ENVIRONMENTS_FILE_VARIABLE = "PIPELINE_ENVIRONMENTS_FILE"
DEFAULT_ENVIRONMENTS_FILE = Path(__file__).resolve().parents[1] / "infrastructure" / "environments.yaml"

# Any adapter's environment; the discriminated union of the registered adapters for validation.
AnyEnvironment = WarehouseEnvironment
if TYPE_CHECKING:
    Environment = WarehouseEnvironment
else:
    Environment = Annotated[Union[tuple(ADAPTERS.values())], Field(discriminator="adapter")]  # noqa: UP007

# A configuration uses a few anchors (a shared block of settings, `<<: *defaults`) and a few levels of
# nesting. Past these bounds the file is refused while it is read, before anything expands it: the values
# an alias bomb stands for (9 levels of 10 aliases: 10^9) would otherwise be walked by the validation
# and printed in its message, costing minutes and gigabytes; deep nesting would exhaust Python's stack.
MAX_ALIAS_VALUES = 10_000  # values all the aliases of a file may stand for, together
MAX_NESTING = 32


class Defaults(Settings):
    """Values an environment inherits unless it sets its own."""

    dbt_project_dir: Path = Path("../dbt")


class Environments(Settings):
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

    def slot_owner(self, name: str) -> AnyEnvironment:
        """The environment whose slot a run on `name` holds: its own, unless an environment declared before it
        writes the same resource (two targets on one DuckDB file), whose runs it then takes turns with."""
        environment = self.get(name)
        resource = environment.exclusive_resource()
        if resource is None:
            return environment
        return next(each for each in self if each.exclusive_resource() == resource)

    def __iter__(self) -> Iterator[AnyEnvironment]:  # type: ignore[override]
        return iter(self.environments.values())


def target_concurrency_limit(target: str) -> str:
    """The Prefect global concurrency limit that lets one run at a time use `target`."""
    return f"dbt-target-{target}"


def environments_file_path() -> Path:
    """The environments file in use: $PIPELINE_ENVIRONMENTS_FILE, else the repository's own."""
    return Path(os.environ.get(ENVIRONMENTS_FILE_VARIABLE) or DEFAULT_ENVIRONMENTS_FILE)


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
        # pydantic names the union member it tried (environments.<name>.<adapter>.<key>): not a key of the file.
        loc = list(problem["loc"])
        if len(loc) > 2 and loc[0] == "environments" and loc[2] in ADAPTERS:
            del loc[2]
        parts = [str(part) for part in loc]
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
            lines.append(f"  - {key}.adapter: unknown adapter {adapter!r}; use {adapter_choices()}.")
        elif problem["type"] == "missing":
            lines.append(f"  - {key}: required, but missing; add it.")
        elif problem["type"] == "union_tag_not_found":
            lines.append(f"  - {key}: missing 'adapter'; use {adapter_choices()}.")
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
        model = ADAPTERS.get(adapter, DuckDBEnvironment)
        return [field.alias or name for name, field in model.model_fields.items() if name != "name"]
    return []


def _did_you_mean(word: str, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""
