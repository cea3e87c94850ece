"""The Terraform of infrastructure/terraform: laid out like a module, driven by the environments file, least privilege.

No provider can be downloaded here, so nothing is planned against Google Cloud. The .tf files are
parsed with python-hcl2; the `locals` (which hold every decision taken from the environments file)
need no provider, so when the terraform binary is installed they are also evaluated for real, with
`terraform console` / `terraform plan` on a copy holding only the variables and the locals.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from dbt_pipeline.environments import BigQueryEnvironment, Environments, load_environments
from dbt_pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
ENVIRONMENTS_FILE = REPO / "infrastructure" / "environments.yaml"
MODULE = REPO / "infrastructure" / "terraform"
EXAMPLE = MODULE / "examples" / "basic"
STANDARD_FILES = ("versions.tf", "variables.tf", "main.tf", "outputs.tf", "README.md")
TERRAFORM = shutil.which("terraform")
needs_terraform = pytest.mark.skipif(TERRAFORM is None, reason="the terraform binary is not installed on this machine")

# Roles that would make the dbt account an administrator of the project or of BigQuery.
FORBIDDEN_ROLES = {"roles/owner", "roles/editor", "roles/bigquery.admin"}
PROJECT_ID = "my-data-project"

# Several BigQuery environments, so the filter and each per-environment value are actually exercised:
# dataset, project (own / gcp.project), location (own / default), labels, table expiration.
SEVERAL_ENVIRONMENTS = """
gcp: {project: shared-project}
environments:
  dev: {adapter: duckdb, path: ../data/dev.duckdb, schema: main}
  prod:
    adapter: bigquery
    dataset: analytics_prod
    location: EU
    labels: {team: data, managed-by: terraform}
  staging:
    adapter: bigquery
    dataset: analytics_staging
    project: staging-project
    table_expiration_days: 7
  ci: {adapter: bigquery, dataset: ci_scratch}
  local: {adapter: duckdb, path: ../data/local.duckdb}
"""


# --- reading the .tf files -------------------------------------------------------------------------


def _unquote(text: str) -> str:
    """A literal string as Terraform means it: python-hcl2 8 keeps the surrounding quotes and escapes."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def _normalise(value: Any) -> Any:
    """python-hcl2 8 output without its markers (`__is_block__`), with block labels and strings unquoted.

    Expressions stay as `${...}` strings (see `_expression`).
    """
    if isinstance(value, dict):
        return {
            _unquote(key): _normalise(item)
            for key, item in value.items()
            if not (key.startswith("__") and key.endswith("__"))
        }
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


def _expression(value: Any) -> str:
    """The source of an attribute that is an expression: `${local.x}` -> `local.x`; a literal is returned as is."""
    text = str(value)
    if text.startswith("${") and text.endswith("}"):
        return text[2:-1]
    return text


@functools.cache
def _parse(path: Path) -> dict[str, Any]:
    options = hcl2.SerializationOptions(with_comments=False)
    with path.open(encoding="utf-8") as handle:
        return _normalise(hcl2.load(handle, serialization_options=options))  # type: ignore[no-any-return]


def _blocks(directory: Path, kind: str) -> dict[str, dict[str, Any]]:
    """The `kind` blocks (variable, output, module, ...) of every .tf file in `directory`, by label."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        for block in _parse(path).get(kind, []):
            found.update(block)
    return found


def _resources(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every resource of `directory`, by (type, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        for block in _parse(path).get("resource", []):
            for kind, by_name in block.items():
                for name, body in by_name.items():
                    found[kind, name] = body
    return found


def _locals(directory: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted(directory.glob("*.tf")):
        for block in _parse(path).get("locals", []):
            merged.update(block)
    return merged


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def _all_tf_files() -> list[Path]:
    return sorted(MODULE.rglob("*.tf"))


# --- a tiny evaluator for the one locals expression that selects the datasets -------------------------


class _MissingAttributeError(Exception):
    """An attribute the YAML document does not have (what Terraform's try() catches)."""


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split on `separator` where it is outside brackets and string literals."""
    parts, depth, quoted, start, index = [], 0, False, 0, 0
    while index < len(text):
        char = text[index]
        if quoted:
            if char == "\\":
                index += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(separator, index):
            parts.append(text[start:index])
            start = index + len(separator)
            index = start
            continue
        index += 1
    parts.append(text[start:])
    return [part.strip() for part in parts]


def _evaluate(expression: str, scope: dict[str, Any]) -> Any:
    """Evaluate the few Terraform forms the dataset selection uses: try(x, null), coalesce(...), ==, paths, literals."""
    expression = expression.strip()
    if len(equality := _split_top_level(expression, "==")) == 2:
        return _evaluate(equality[0], scope) == _evaluate(equality[1], scope)
    if expression == "null":
        return None
    if re.fullmatch(r'"[^"$%\\]*"', expression):
        return expression[1:-1]
    call = re.fullmatch(r"(\w+)\((.*)\)", expression, flags=re.DOTALL)
    if call:
        function, arguments = call[1], _split_top_level(call[2], ",")
        if function == "try" and len(arguments) == 2:
            try:
                return _evaluate(arguments[0], scope)
            except _MissingAttributeError:
                return _evaluate(arguments[1], scope)
        if function == "coalesce":
            values = [_evaluate(argument, scope) for argument in arguments]
            return next(value for value in values if value not in (None, ""))
        raise NotImplementedError(f"{function}() is not re-implemented here: {expression}")
    if re.fullmatch(r"\w+(\.\w+)*", expression):
        head, *path = expression.split(".")
        value = scope[head]
        for name in path:
            if not isinstance(value, dict) or name not in value:
                raise _MissingAttributeError(expression)
            value = value[name]
        return value
    raise NotImplementedError(f"not re-implemented here: {expression}")


def _select_bigquery_environments(
    expression: str, document: dict[str, Any], project_id: str
) -> dict[str, dict[str, Any]]:
    """What `local.bigquery_environments` holds for `document`: its for-expression, evaluated in Python."""
    match = re.fullmatch(r"\{for (\w+), (\w+) in (.+?) : \1 => \{(.*)\} if (.+)\}", expression, flags=re.DOTALL)
    assert match, f"local.bigquery_environments is not a filtered for-expression over the environments: {expression}"
    key, value, collection, body, condition = match.groups()
    scope: dict[str, Any] = {"local": {"config": document}, "var": {"project_id": project_id}}
    attributes = dict(_split_top_level(item, "=") for item in _split_top_level(body, ","))
    selected = {}
    for name, environment in _evaluate(collection, scope).items():
        item_scope = {**scope, key: name, value: environment}
        if _evaluate(condition, item_scope):
            selected[name] = {
                attribute: _evaluate(attributes[attribute], item_scope)
                for attribute in ("project", "dataset_id", "location")
            }
    return selected


def _loader_view(environments: Environments, project_id: str) -> dict[str, dict[str, Any]]:
    """The BigQuery environments as the pipeline's own loader reads them (project resolved as the setup does)."""
    return {
        environment.name: {
            "project": environment.project or environments.gcp.project or project_id,
            "dataset_id": environment.dataset,
            "location": environment.location,
        }
        for environment in environments
        if isinstance(environment, BigQueryEnvironment)
    }


# --- evaluating the real locals with terraform ---------------------------------------------------------


def _block_source(text: str, header: str) -> str:
    """The source of the block that starts with `header` (e.g. `locals {`), braces balanced."""
    start = text.index(header)
    depth = 0
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0 and text[index] == "}":
            return text[start : index + 1]
    raise AssertionError(f"unbalanced block {header!r}")


@pytest.fixture
def locals_only(tmp_path: Path) -> Path:
    """A copy of the module with only its variables and locals (no provider needed), laid out like the repository.

    A copy of the shipped environments file is at <tmp>/infrastructure/environments.yaml, where the module's default
    path points; tests may overwrite it.
    """
    module = tmp_path / "infrastructure" / "terraform"
    module.mkdir(parents=True)
    shutil.copy(MODULE / "variables.tf", module / "variables.tf")
    main = (MODULE / "main.tf").read_text(encoding="utf-8")
    (module / "locals.tf").write_text(_block_source(main, "locals {") + "\n", encoding="utf-8")
    shutil.copy(ENVIRONMENTS_FILE, module.parent / "environments.yaml")
    return module


def _terraform(directory: Path, *arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_INPUT": "0"}
    return subprocess.run(
        [str(TERRAFORM), *arguments],
        cwd=directory,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )


def _console(directory: Path, expression: str, *arguments: str) -> Any:
    """The value of `expression` in `directory`, through `terraform console` and jsonencode()."""
    result = _terraform(directory, "console", *arguments, stdin=f"jsonencode({expression})\n")
    assert result.returncode == 0, result.stderr
    return json.loads(json.loads(result.stdout.strip()))


# --- 1. layout ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", [MODULE, EXAMPLE], ids=["module", "examples/basic"])
def test_module_and_example_have_the_standard_files(directory: Path) -> None:
    """The module and its example each have versions.tf, variables.tf, main.tf, outputs.tf and a README."""
    missing = [name for name in STANDARD_FILES if not (directory / name).is_file()]
    assert not missing, f"{directory.relative_to(REPO)} lacks {missing}"


def test_example_calls_the_module_with_declared_inputs_only() -> None:
    """examples/basic calls the module at ../.. and passes only variables the module declares."""
    modules = _blocks(EXAMPLE, "module")
    assert len(modules) == 1
    (call,) = modules.values()
    assert call["source"] == "../.."
    assert (EXAMPLE / call["source"]).resolve() == MODULE
    arguments = set(call) - {"source", "version", "providers", "depends_on", "count", "for_each"}
    assert arguments <= set(_blocks(MODULE, "variable")), arguments - set(_blocks(MODULE, "variable"))
    required = {name for name, body in _blocks(MODULE, "variable").items() if "default" not in body}
    assert required <= arguments, f"the example does not pass the required {required - arguments}"


@needs_terraform
def test_terraform_fmt_finds_nothing_to_change() -> None:
    """`terraform fmt -check -recursive` passes on infrastructure/terraform (module and examples)."""
    result = _terraform(REPO, "fmt", "-check", "-recursive", "-diff", "infrastructure/terraform")
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"


# --- 2. the datasets are the BigQuery environments of the environments file ---------------------------


def test_datasets_are_created_from_the_environments_file_filtered_on_bigquery() -> None:
    """main.tf decodes the environments file and creates one dataset per entry of local.bigquery_environments."""
    local = _locals(MODULE)
    assert _expression(local["environments_file"]) == (
        'coalesce(var.environments_file, "${path.module}/../environments.yaml")'
    )
    assert _expression(local["config"]) == "yamldecode(file(local.environments_file))"
    selection = _expression(local["bigquery_environments"])
    assert selection.startswith("{for name, env in local.config.environments : name => {")
    assert selection.endswith('} if try(env.adapter, null) == "bigquery"}')

    dataset = _resources(MODULE)["google_bigquery_dataset", "main"]
    assert _expression(dataset["for_each"]) == "local.bigquery_environments"
    for attribute in ("project", "dataset_id", "location", "labels", "default_table_expiration_ms"):
        assert _expression(dataset[attribute]) == f"each.value.{attribute}", f"{attribute} is not read from the file"
    datasets = [key for key in _resources(MODULE) if key[0] == "google_bigquery_dataset"]
    assert datasets == [("google_bigquery_dataset", "main")], "a dataset is declared outside the environments file"


@pytest.mark.parametrize("source", ["shipped", "several"])
def test_selected_environments_are_the_bigquery_ones_of_the_project_loader(source: str, tmp_path: Path) -> None:
    """The locals expression selects exactly the loader's BigQuery environments, with their projects and datasets."""
    path = ENVIRONMENTS_FILE
    if source == "several":
        path = tmp_path / "environments.yaml"
        path.write_text(SEVERAL_ENVIRONMENTS, encoding="utf-8")
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    expression = _expression(_locals(MODULE)["bigquery_environments"])

    selected = _select_bigquery_environments(expression, document, PROJECT_ID)

    expected = _loader_view(load_environments(path), PROJECT_ID)
    assert selected == expected
    if source == "shipped":
        assert selected == {"prod": {"project": PROJECT_ID, "dataset_id": "analytics_prod", "location": "EU"}}


@needs_terraform
@pytest.mark.parametrize("source", ["shipped", "several"])
def test_terraform_evaluates_the_same_datasets_as_the_project_loader(source: str, locals_only: Path) -> None:
    """Terraform, on the real locals, resolves each BigQuery environment's project, dataset, location, labels, TTL."""
    environments_file = locals_only.parent / "environments.yaml"
    if source == "several":
        environments_file.write_text(SEVERAL_ENVIRONMENTS, encoding="utf-8")
    arguments = (f"-var=project_id={PROJECT_ID}", '-var=extra_labels={cost-center = "analytics", team = "platform"}')

    evaluated = _console(locals_only, "local.bigquery_environments", *arguments)

    environments = load_environments(environments_file)
    expected = _loader_view(environments, PROJECT_ID)
    for name, view in expected.items():
        environment = environments.get(name)
        assert isinstance(environment, BigQueryEnvironment)
        # extra_labels first, the environment's own labels win over them, dbt-environment always set
        view["labels"] = {"cost-center": "analytics", "team": "platform", **environment.labels, "dbt-environment": name}
        days = environment.table_expiration_days
        view["default_table_expiration_ms"] = days * 24 * 60 * 60 * 1000 if days else None
    assert evaluated == expected
    assert set(_console(locals_only, "local.job_projects", *arguments)) == {v["project"] for v in expected.values()}


@needs_terraform
def test_an_unknown_adapter_is_refused_by_terraform_as_by_the_loader(locals_only: Path) -> None:
    """A typo in an adapter is not silently skipped: Terraform refuses it (a precondition), as the loader does."""
    environments_file = locals_only.parent / "environments.yaml"
    environments_file.write_text(
        "environments:\n  prod: {adapter: bigquery, dataset: analytics_prod}\n  qa: {adapter: bigqeury, dataset: qa}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="unknown adapter 'bigqeury'"):
        load_environments(environments_file)
    assert _console(locals_only, "local.unknown_adapters", f"-var=project_id={PROJECT_ID}") == {"qa": "bigqeury"}
    service_account = _resources(MODULE)["google_service_account", "main"]
    conditions = [_expression(rule["condition"]) for rule in service_account["lifecycle"][0]["precondition"]]
    assert "length(local.unknown_adapters) == 0" in conditions


@needs_terraform
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("project_id", "My_Project", "must be a GCP project id"),
        ("service_account_id", "dbt", "service_account_id must be 6 to 30"),
        ("environments_file", "missing.yaml", "environments_file must be null"),
        ("extra_labels", '{Team = "data"}', "extra_labels key must start with a lowercase letter"),
        ("extra_labels", '{dbt-environment = "x"}', "must not set dbt-environment"),
    ],
)
def test_invalid_inputs_are_refused_saying_what_is_allowed(
    locals_only: Path, variable: str, value: str, message: str
) -> None:
    """A wrong input stops `terraform plan` with a message that says what is allowed; right inputs pass."""
    valid = {"project_id": PROJECT_ID}
    result = _terraform(
        locals_only, "plan", "-no-color", *(f"-var={k}={v}" for k, v in {**valid, variable: value}.items())
    )
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split()), result.stderr
    assert _terraform(locals_only, "plan", "-no-color", f"-var=project_id={PROJECT_ID}").returncode == 0


# --- 3. least privilege -------------------------------------------------------------------------------


def test_the_only_project_level_role_is_bigquery_job_user() -> None:
    """At project level the service account only gets roles/bigquery.jobUser, on the BigQuery environments' projects."""
    resources = _resources(MODULE)
    project_level = {
        key: body for key, body in resources.items() if re.match(r"google_(project|folder|organization)_iam", key[0])
    }
    assert set(project_level) == {("google_project_iam_member", "main")}, "only additive project grants are allowed"
    grant = project_level["google_project_iam_member", "main"]
    assert grant["role"] == "roles/bigquery.jobUser"
    assert grant["member"] == "serviceAccount:${google_service_account.main.email}"
    assert _expression(grant["for_each"]) == "local.job_projects"
    assert (
        _expression(_locals(MODULE)["job_projects"]) == "toset([for env in local.bigquery_environments : env.project])"
    )


def test_data_editor_is_granted_on_each_dataset_only() -> None:
    """roles/bigquery.dataEditor is granted per dataset, on exactly the datasets of the BigQuery environments."""
    resources = _resources(MODULE)
    dataset_grants = {key: body for key, body in resources.items() if key[0].startswith("google_bigquery_dataset_iam")}
    assert set(dataset_grants) == {("google_bigquery_dataset_iam_member", "main")}
    grant = dataset_grants["google_bigquery_dataset_iam_member", "main"]
    assert grant["role"] == "roles/bigquery.dataEditor"
    assert grant["member"] == "serviceAccount:${google_service_account.main.email}"
    assert _expression(grant["for_each"]) == "local.bigquery_environments"
    assert _expression(grant["dataset_id"]) == "google_bigquery_dataset.main[each.key].dataset_id"
    assert _expression(grant["project"]) == "google_bigquery_dataset.main[each.key].project"
    dataset = resources["google_bigquery_dataset", "main"]
    assert "access" not in dataset, "an access block would replace the dataset IAM grants (and can widen them)"
    other_iam = {kind for kind, _ in resources if "_iam_" in kind} - {
        "google_project_iam_member",
        "google_bigquery_dataset_iam_member",
    }
    assert not other_iam, f"unexpected IAM resources: {other_iam}"


def test_no_broad_role_is_granted_anywhere() -> None:
    """No .tf file (module or example) names a role but bigquery.jobUser and dataEditor: no owner/editor/admin."""
    roles: set[str] = set()
    for path in _all_tf_files():
        for text in _strings(_parse(path)):
            roles.update(re.findall(r"roles/[\w.]+", text))
    assert not roles & FORBIDDEN_ROLES
    assert roles == {"roles/bigquery.jobUser", "roles/bigquery.dataEditor"}


def test_risky_options_are_off_by_default() -> None:
    """By default no key lands in the state and no dataset holding tables is deleted."""
    variables = _blocks(MODULE, "variable")
    assert variables["create_service_account_key"]["default"] is False
    assert "state" in variables["create_service_account_key"]["description"]
    assert variables["dataset_delete_contents_on_destroy"]["default"] is False
    key = _resources(MODULE)["google_service_account_key", "main"]
    assert _expression(key["count"]) == "var.create_service_account_key ? 1 : 0"
    dataset = _resources(MODULE)["google_bigquery_dataset", "main"]
    assert _expression(dataset["delete_contents_on_destroy"]) == "var.dataset_delete_contents_on_destroy"
    key_output = _blocks(MODULE, "output")["service_account_key"]
    assert key_output["sensitive"] is True
    assert _expression(key_output["value"]) == "one(google_service_account_key.main[*].private_key)"


# --- 4. inputs, outputs, versions ---------------------------------------------------------------------


@pytest.mark.parametrize("directory", [MODULE, EXAMPLE], ids=["module", "examples/basic"])
def test_every_variable_is_typed_and_described_and_every_output_described(directory: Path) -> None:
    """Each variable has a type and a description, each output a description."""
    variables, outputs = _blocks(directory, "variable"), _blocks(directory, "output")
    assert variables
    assert outputs
    untyped = [name for name, body in variables.items() if not body.get("type")]
    undescribed = [
        name for name, body in {**variables, **outputs}.items() if not str(body.get("description", "")).strip()
    ]
    assert not untyped, f"variables without a type: {untyped}"
    assert not undescribed, f"without a description: {undescribed}"


def test_module_inputs_are_validated_with_a_message_saying_what_is_allowed() -> None:
    """The module's inputs are the expected ones, and every non-boolean input has a validation with an error message."""
    variables = _blocks(MODULE, "variable")
    assert set(variables) == {
        "project_id",
        "environments_file",
        "service_account_id",
        "create_service_account_key",
        "dataset_delete_contents_on_destroy",
        "extra_labels",
    }
    assert variables["service_account_id"]["default"] == "dbt-runner"
    assert variables["extra_labels"]["default"] == {}
    for name, body in variables.items():
        if _expression(body["type"]) == "bool":
            continue
        rules = body.get("validation", [])
        assert rules, f"variable {name} has no validation"
        for rule in rules:
            assert rule.get("condition"), name
            assert len(str(rule.get("error_message", ""))) > 20, name


@pytest.mark.parametrize("directory", [MODULE, EXAMPLE], ids=["module", "examples/basic"])
def test_versions_bound_terraform_and_the_google_provider(directory: Path) -> None:
    """versions.tf requires Terraform >= 1.5 and pins hashicorp/google to a range with a lower and an upper bound."""
    (settings,) = _parse(directory / "versions.tf")["terraform"]
    assert settings["required_version"] == ">= 1.5"
    google = settings["required_providers"][0]["google"]
    assert google["source"] == "hashicorp/google"
    constraints = [part.strip() for part in google["version"].split(",")]
    assert any(re.fullmatch(r">=?\s*\d+(\.\d+)*", part) for part in constraints), google["version"]
    assert any(re.fullmatch(r"<=?\s*\d+(\.\d+)*|~>\s*\d+\.\d+.*", part) for part in constraints), google["version"]


def _table_names(table: str) -> set[str]:
    return set(re.findall(r"^\| (\w+) \|", table, flags=re.MULTILINE)) - {"Name"}


def test_readme_tables_list_every_input_and_output() -> None:
    """The README's Inputs and Outputs tables (between the terraform-docs markers) name every variable and output."""
    readme = (MODULE / "README.md").read_text(encoding="utf-8")
    match = re.search(
        r"<!-- BEGINNING OF PRE-COMMIT-TERRAFORM DOCS HOOK -->(.*)<!-- END OF PRE-COMMIT-TERRAFORM DOCS HOOK -->",
        readme,
        flags=re.DOTALL,
    )
    assert match, "terraform-docs markers missing"
    inputs_table = match[1].split("## Inputs", 1)[1].split("## Outputs", 1)[0]
    outputs_table = match[1].split("## Outputs", 1)[1]
    assert _table_names(inputs_table) == set(_blocks(MODULE, "variable"))
    assert _table_names(outputs_table) == set(_blocks(MODULE, "output"))
    for step in ("terraform init", "terraform plan -var project_id=", "terraform apply", "keys create"):
        assert step in readme, step
    assert "GOOGLE_APPLICATION_CREDENTIALS=" in readme
    assert "python -m infrastructure.setup_profiles --target prod" in readme
