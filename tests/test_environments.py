"""The environments file: the shipped one loads, and every mistake is named with its fix."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from dbt_pipeline.environments import (
    DEFAULT_ENVIRONMENTS_FILE,
    MAX_ALIAS_VALUES,
    BigQueryEnvironment,
    DuckDBEnvironment,
    load_environments,
)
from dbt_pipeline.errors import ConfigError, UnknownTargetError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "environments.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_file_declares_dev_on_duckdb_and_prod_on_bigquery() -> None:
    """The repository's own file loads: dev is DuckDB with 1 thread, prod BigQuery with 4, as in the seed."""
    environments = load_environments(DEFAULT_ENVIRONMENTS_FILE)
    dev, prod = environments.get("dev"), environments.get("prod")
    assert isinstance(dev, DuckDBEnvironment)
    assert dev.threads == 1
    assert isinstance(prod, BigQueryEnvironment)
    assert prod.threads == 4
    assert dev.dbt_project_dir == DEFAULT_ENVIRONMENTS_FILE.parents[1] / "dbt"
    assert dev.profile_block_name == "dbt-cli-profile-dev"
    # dev runs the seed's commands one after the other; prod one dbt build (a failure stops only its descendants)
    assert (dev.mode, prod.mode) == ("steps", "build")


def test_adding_an_environment_is_one_stanza(tmp_path: Path) -> None:
    """A staging stanza is all it takes: it inherits the default project dir, relative paths resolve."""
    path = write(
        tmp_path,
        """
defaults: {dbt_project_dir: ./project}
environments:
  dev: {adapter: duckdb, path: data/dev.duckdb}
  staging: {adapter: bigquery, dataset: analytics_staging, project: my-project-123, threads: 2}
""",
    )
    environments = load_environments(path)
    assert environments.names == ["dev", "staging"]
    staging = environments.get("staging")
    assert isinstance(staging, BigQueryEnvironment)
    assert staging.dbt_project_dir == tmp_path / "project"
    assert environments.get("dev").path == tmp_path / "data" / "dev.duckdb"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", r"is empty"),
        ("environments: [", r"not valid YAML"),
        ("- dev\n- prod\n", r"expected a mapping"),
        ("environments: {}\n", r"environments: .*at least 1"),
        (
            "environments:\n  dev: {adapter: duckdb, path: a.db, thread: 2}\n",
            r"environments\.dev\.thread: unknown key \(did you mean 'threads'\?\)",
        ),
        (
            "environment:\n  dev: {adapter: duckdb, path: a.db}\n",
            r"environment: unknown key \(did you mean 'environments'\?\)",
        ),
        (
            "environments:\n  dev: {adapter: duckdb, path: a.db, threads: 0}\n",
            r"environments\.dev\.threads: .*greater than 0",
        ),
        (
            "environments:\n  dev: {adapter: duckdb, path: a.db, takeover_after_seconds: 5}\n",
            r"environments\.dev\.takeover_after_seconds: .*greater than or equal to 20",
        ),
        (
            "environments:\n  dev: {adapter: duckdb, path: a.db, threads: many}\n",
            r"environments\.dev\.threads: .*integer",
        ),
        (
            "environments:\n  dev: {adapter: snowflake}\n",
            r"environments\.dev\.adapter: unknown adapter 'snowflake'; use bigquery, duckdb or postgres",
        ),
        ("environments:\n  dev: {path: a.db}\n", r"environments\.dev: missing 'adapter'"),
        (
            "environments:\n  dev: {adapter: duckdb, path: a.db}\n  dev: {adapter: duckdb, path: b.db}\n",
            r"'dev' is declared twice",
        ),
        ("environments:\n  prod: {adapter: bigquery, dataset: 'bad-name!'}\n", r"environments\.prod\.dataset"),
        ("environments:\n  Prod: {adapter: duckdb, path: a.db}\n", r"environments\.Prod"),
        ("environments:\n  ../etc: {adapter: duckdb, path: a.db}\n", r"environments\.\.\./etc"),
        ("environments:\n  'dev;rm': {adapter: duckdb, path: a.db}\n", r"environments\.dev;rm"),
        ("environments:\n  prod: {adapter: bigquery}\n", r"environments\.prod\.dataset: required, but missing"),
        (
            "environments:\n  dev: {adapter: duckdb, path: a.db, mode: fast}\n",
            r"environments\.dev\.mode: Input should be 'steps' or 'build' \(got 'fast'\)",
        ),
    ],
)
def test_invalid_file_names_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    """Each mistake raises a ConfigError that names the file and the faulty key."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_environments(path)
    assert str(path) in str(caught.value)


def test_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    """A missing file names the path and the variable that points elsewhere."""
    with pytest.raises(ConfigError, match=r"not found: .*PIPELINE_ENVIRONMENTS_FILE"):
        load_environments(tmp_path / "nope.yaml")


def test_unknown_target_lists_known_ones() -> None:
    """Asking for an undeclared target lists the declared ones and suggests the close match."""
    environments = load_environments(DEFAULT_ENVIRONMENTS_FILE)
    with pytest.raises(UnknownTargetError, match=r"'prd' \(did you mean 'prod'\?\).*dev, prod"):
        environments.get("prd")


def test_environment_variable_selects_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$PIPELINE_ENVIRONMENTS_FILE points every command at another file."""
    path = write(tmp_path, yaml.safe_dump({"environments": {"ci": {"adapter": "duckdb", "path": "ci.db"}}}))
    monkeypatch.setenv("PIPELINE_ENVIRONMENTS_FILE", str(path))
    assert load_environments().names == ["ci"]


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: 10 values, then `levels` anchors of 10 aliases each to the one before (10^levels)."""
    lines = ["defaults: {dbt_project_dir: ./project}", "x-laughs:", f"  a0: &a0 [{', '.join(['lol'] * 10)}]"]
    lines += [f"  a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]" for level in range(1, levels + 1)]
    lines += ["environments:", f"  dev: {{adapter: duckdb, path: dev.duckdb, threads: *a{levels}}}"]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_while_the_file_is_read(tmp_path: Path) -> None:
    """9 levels of 10 aliases (10^9 values behind `threads`) are refused by the loader's bound, naming file and fix.

    Unbounded, the validation walked and printed the 10^9 values: minutes and gigabytes. The loader counts
    what aliases stand for as it composes the document, so it stops after ~10^4 values: milliseconds.
    """
    path = write(tmp_path, billion_laughs())
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_environments(path)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith(f"{path} is refused at x-laughs.a")
    assert f"aliases stand for more than {MAX_ALIAS_VALUES:,} values" in message
    assert "Fix: " in message
    assert "lol" not in message, "the values are never expanded into the message"
    assert elapsed < 5, f"{elapsed:.1f} s"  # a sanity bound: the refusal takes milliseconds


def test_anchors_and_aliases_a_configuration_uses_still_load(tmp_path: Path) -> None:
    """Shared settings through an anchor, a merge key and an alias, as users write them, load as if written out."""
    path = write(
        tmp_path,
        """
environments:
  dev: &duckdb {adapter: duckdb, path: dev.duckdb, schema: analytics, threads: 2}
  ci: {<<: *duckdb, path: ci.duckdb, threads: 1}
  prod: {adapter: bigquery, dataset: analytics_prod, project: my-project-123, labels: &labels {team: data}}
  staging: {adapter: bigquery, dataset: analytics_staging, project: my-project-123, labels: *labels}
""",
    )
    environments = load_environments(path)
    ci, staging = environments.get("ci"), environments.get("staging")
    assert isinstance(ci, DuckDBEnvironment)
    assert (ci.path, ci.schema_, ci.threads) == (tmp_path / "ci.duckdb", "analytics", 1)
    assert isinstance(staging, BigQueryEnvironment)
    assert staging.labels == {"team": "data"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "&loop [1, *loop]",
            r"environments\.dev\.threads\[1\] \(line 2\): an alias refers to the value that contains it",
        ),
        ("[" * 40 + "]" * 40, r"environments\.dev\.threads(\[0\])+ \(line 2\): values nest more than 32 levels deep"),
    ],
    ids=["recursive-alias", "deep-nesting"],
)
def test_hostile_yaml_is_refused_naming_where(tmp_path: Path, value: str, expected: str) -> None:
    """An alias inside its own anchor, or nesting that would exhaust Python's stack: a ConfigError, not a crash."""
    path = write(tmp_path, f"environments:\n  dev: {{adapter: duckdb, path: dev.duckdb, threads: {value}}}\n")
    with pytest.raises(ConfigError, match=expected) as caught:
        load_environments(path)
    assert str(caught.value).startswith(f"{path} is refused at ")


# What a message says beyond its key, for the mistakes a user makes most: the value as written, the
# rule in words (a regular expression is not a fix a user can apply), the line, what is allowed
# instead. The commands print these messages as they are (tests/test_bad_input.py proves that once
# per command). Any wording will do for a rule as long as it names the allowed characters.
NAME_RULE = re.compile(r"(?i)lowercase letters.*(digits|numbers).*(dashes|hyphens)")
PROJECT_ID_RULE = NAME_RULE
DATASET_RULE = re.compile(r"(?i)letters.*(digits|numbers).*underscores")
URL_RULE = re.compile(r"http://.*https://|https://.*http://")  # "must start with http:// or https://"
DUCKDB = "environments:\n  dev: {adapter: duckdb, path: dev.duckdb"
BIGQUERY = "environments:\n  prod: {adapter: bigquery, dataset: analytics"


def _bad_name(name: str) -> tuple[str, tuple[str | re.Pattern[str], ...], tuple[str, ...]]:
    # pydantic's internals ("[key]") are not a location a user can find in the file
    return (
        f"environments:\n  '{name}': {{adapter: duckdb, path: x.db}}\n",
        (f"environments.{name}", f"'{name}'", NAME_RULE),
        ("[key]",),
    )


MESSAGE_CASES: dict[str, tuple[str | bytes, tuple[str | re.Pattern[str], ...], tuple[str, ...]]] = {
    "empty-file": ("  \n", ("is empty", "declare at least one environment under 'environments:'"), ()),
    "not-yaml": ("environments:\n  dev: {adapter: duckdb\n", ("is not valid YAML", "line 3"), ()),
    "not-utf8": (b"environments:\n  dev: {adapter: duckdb, path: caf\xe9.db}\n", (re.compile(r"(?i)utf-?8"),), ()),
    "a-list": ("- dev\n- prod\n", ("expected a mapping with an 'environments' key, got list",), ()),
    "unknown-top-level-key": (
        "default: {dbt_project_dir: .}\n" + DUCKDB + "}\n",
        ("default: unknown key (did you mean 'defaults'?)", "Allowed here: defaults, environments, gcp"),
        (),
    ),
    "unknown-environment-key": (
        DUCKDB + ", thread: 2}\n",
        ("environments.dev.thread: unknown key (did you mean 'threads'?)", "Allowed here: "),
        (),
    ),
    "unknown-gcp-key": (
        "gcp: {credentials: x}\n" + DUCKDB + "}\n",
        ("gcp.credentials: unknown key (did you mean 'credentials_block'?)",),
        (),
    ),
    "threads-many": (DUCKDB + ", threads: many}\n", ("environments.dev.threads: ", "integer", "'many'"), ()),
    "threads-negative": (DUCKDB + ", threads: -1}\n", ("environments.dev.threads: ", "greater than 0", "-1"), ()),
    "threads-boolean": (DUCKDB + ", threads: true}\n", ("environments.dev.threads: ", "integer"), ()),
    "duplicate-environment": (
        DUCKDB + "}\n  dev: {adapter: duckdb, path: other.duckdb}\n",
        ("'dev' is declared twice; remove or rename one", "line 3"),
        (),
    ),
    "missing-adapter": (
        "environments:\n  dev: {path: x.db}\n",
        ("environments.dev: missing 'adapter'", re.compile(r"missing 'adapter'; use .*duckdb")),
        (),
    ),
    "environment-not-a-mapping": ("environments:\n  dev: duckdb\n", ("environments.dev: ", "'duckdb'"), ()),
    "duckdb-without-path": (
        "environments:\n  dev: {adapter: duckdb}\n",
        ("environments.dev.path: required, but missing",),
        (),
    ),
    "invalid-dataset": (
        "environments:\n  prod: {adapter: bigquery, dataset: analytics-prod}\n",
        ("environments.prod.dataset", "'analytics-prod'", DATASET_RULE),
        (),
    ),
    "invalid-environment-project": (
        BIGQUERY + ", project: My_Project}\n",
        ("environments.prod.project", "'My_Project'", PROJECT_ID_RULE),
        (),
    ),
    "invalid-gcp-project": (
        "gcp: {project: acme}\n" + BIGQUERY + "}\n",
        ("gcp.project", "'acme'", PROJECT_ID_RULE),
        (),
    ),
    "api-endpoint-without-scheme": (
        BIGQUERY + ", project: acme-data-123, api_endpoint: 'localhost:9050'}\n",
        ("environments.prod.api_endpoint", "'localhost:9050'", URL_RULE),
        (),
    ),
    "notification-block-invalid-name": (
        DUCKDB + ", notification_block: Alerts Dev}\n",
        ("environments.dev.notification_block", "'Alerts Dev'"),
        (),
    ),
    "name-../x": _bad_name("../x"),
    "name-a;b": _bad_name("a;b"),
    "name-Dev": _bad_name("Dev"),
    "name-a b": _bad_name("a b"),
}


@pytest.mark.parametrize(("text", "expected", "absent"), MESSAGE_CASES.values(), ids=MESSAGE_CASES.keys())
def test_message_quotes_the_value_and_says_the_rule(
    tmp_path: Path, text: str | bytes, expected: tuple[str | re.Pattern[str], ...], absent: tuple[str, ...]
) -> None:
    """A mistake's message names the file and the key, quotes the value, and says the rule, the line or the fix."""
    path = tmp_path / "environments.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_environments(path)
    message = str(caught.value)
    assert str(path) in message
    said = message.replace(str(path), "FILE")  # a piece such as "-1" must not be found in the path
    missing = [
        piece.pattern if isinstance(piece, re.Pattern) else piece
        for piece in expected
        if not (piece.search(said) if isinstance(piece, re.Pattern) else piece in said)
    ]
    assert not missing, f"missing {missing} from:\n{message}"
    assert not [piece for piece in absent if piece in message], message


# -- where each target's last good state is kept (dbt_pipeline.state_store) ---------------------------


def test_state_store_defaults_to_the_pipeline_folder_at_the_repository_root() -> None:
    """Unset, the state store is `.pipeline/state/` at the repository root (git-ignored) for the shipped file."""
    for environment in load_environments(DEFAULT_ENVIRONMENTS_FILE):
        assert environment.state_location == DEFAULT_ENVIRONMENTS_FILE.parents[1] / ".pipeline" / "state"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("state", "{dir}/state"),
        ("../shared/state", "{parent}/shared/state"),
        ("/srv/dbt-state", "/srv/dbt-state"),
        ("file:///srv/dbt-state", "/srv/dbt-state"),
        (None, "{parent}/.pipeline/state"),
    ],
    ids=["relative", "parent", "absolute", "file-url", "unset"],
)
def test_a_state_store_folder_is_relative_to_the_file(tmp_path: Path, value: str | None, expected: str) -> None:
    """A folder, like every path of the file, is anchored at the file's directory, and is a Path."""
    directory = tmp_path / "config"
    directory.mkdir()
    setting = "" if value is None else f", state_store: '{value}'"
    path = write(directory, f"environments:\n  dev: {{adapter: duckdb, path: a.db{setting}}}\n")
    environments = load_environments(path)
    location = environments.get("dev").state_location
    assert location == Path(expected.format(dir=directory, parent=tmp_path))
    # The validated value is the location itself: a copy made from the model's data means the same place.
    dev = environments.get("dev")
    copy = type(dev).model_validate(dev.model_dump())
    assert copy.state_location == location


def test_a_state_store_url_is_kept_as_written(tmp_path: Path) -> None:
    """A bucket is a URL, not a path: it is not anchored anywhere."""
    path = write(
        tmp_path,
        "environments:\n"
        "  prod: {adapter: bigquery, dataset: analytics, state_store: 'gs://acme-dbt-state/pipeline'}\n"
        "  dev: {adapter: duckdb, path: a.db, state_store: 'memory://state'}\n",
    )
    environments = load_environments(path)
    assert environments.get("prod").state_location == "gs://acme-dbt-state/pipeline"
    assert environments.get("prod").state_store == "gs://acme-dbt-state/pipeline"
    assert environments.get("dev").state_location == "memory://state"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gcs3://bucket/state", r"environments\.dev\.state_store: fsspec knows no protocol 'gcs3'.*gs://bucket/prefix"),
        ("https://example.com/state", r"environments\.dev\.state_store: https:// cannot hold a state"),
        ("gs://", r"environments\.dev\.state_store: the URL names no bucket"),
        ("", r"environments\.dev\.state_store: .*at least 1 character"),
    ],
    ids=["unknown-protocol", "read-only", "no-bucket", "empty"],
)
def test_a_state_store_that_cannot_hold_a_state_is_refused(tmp_path: Path, value: str, expected: str) -> None:
    """A URL whose protocol fsspec does not know (or cannot write) is refused while the file loads, naming the key."""
    path = write(tmp_path, f"environments:\n  dev: {{adapter: duckdb, path: a.db, state_store: '{value}'}}\n")
    with pytest.raises(ConfigError, match=expected) as caught:
        load_environments(path)
    assert str(path) in str(caught.value)
    assert f"(got '{value}')" in str(caught.value)


def test_targets_that_write_one_duckdb_file_share_the_slot_of_the_first(tmp_path: Path) -> None:
    """DuckDB lets one process at a time write a file: two targets on one file (however its path is spelled)
    take turns through the slot of the one declared first; other targets keep their own slot."""
    path = write(
        tmp_path,
        "gcp: {project: my-project-123}\n"
        "environments:\n"
        "  dev: {adapter: duckdb, path: data/shop.duckdb}\n"
        "  solo: {adapter: duckdb, path: data/solo.duckdb}\n"
        f"  ci: {{adapter: duckdb, path: {tmp_path}/data/../data/shop.duckdb, schema: ci}}\n"
        "  prod: {adapter: bigquery, dataset: analytics}\n",
    )
    environments = load_environments(path)
    owners = {name: environments.slot_owner(name).name for name in environments.names}
    assert owners == {"dev": "dev", "solo": "solo", "ci": "dev", "prod": "prod"}
    assert environments.get("ci").exclusive_resource() == f"DuckDB file {tmp_path / 'data' / 'shop.duckdb'}"
