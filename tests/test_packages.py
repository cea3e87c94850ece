"""Projects with packages: the pipeline runs `dbt deps` first, from packages.yml or dependencies.yml,
for a local package and a package from a git repository (real git, on this machine); a package whose
repository cannot be reached is one message naming the package and the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Workspace
from tests.prefect_api import all_task_runs, step_runs

# Fetching and using packages, not what the project builds: a slice of the example project (tests/conftest.py).
pytestmark = pytest.mark.example_slice

GIT = shutil.which("git") or "git"
DBT = Path(sys.executable).with_name("dbt")
# A model added to the project that calls one macro of each package.
MODEL = "select {{ local_helpers.times_two(21) }} as from_local, {{ git_helpers.plus_one(41) }} as from_git\n"


def dbt_package(folder: Path, name: str, macro: str) -> Path:
    """A dbt package at `folder`: a dbt_project.yml named `name` and one macro file."""
    (folder / "macros").mkdir(parents=True)
    (folder / "dbt_project.yml").write_text(
        f"name: {name}\nversion: '1.0.0'\nconfig-version: 2\nmacro-paths: ['macros']\n", encoding="utf-8"
    )
    (folder / "macros" / f"{name}.sql").write_text(macro, encoding="utf-8")
    return folder


def git(*args: str, cwd: Path) -> None:
    """Run git with an identity of its own and no user configuration (the test must not depend on ~/.gitconfig)."""
    environment = {
        **os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }  # fmt: skip
    subprocess.run([GIT, *args], cwd=cwd, env=environment, check=True, capture_output=True)


def git_package(root: Path) -> str:
    """A dbt package committed and tagged v1.0.0 in a repository, served as a bare clone; returns its file:// URL."""
    source = dbt_package(root / "git_helpers", "git_helpers", "{% macro plus_one(x) %}({{ x }} + 1){% endmacro %}\n")
    git("init", "--quiet", "--initial-branch", "main", cwd=source)
    git("add", ".", cwd=source)
    git("commit", "--quiet", "--message", "git_helpers 1.0.0", cwd=source)
    git("tag", "v1.0.0", cwd=source)
    bare = root / "git_helpers.git"
    git("clone", "--quiet", "--bare", str(source), str(bare), cwd=root)
    return bare.as_uri()


def packages_document(git_url: str) -> str:
    """A local package (relative to the project, as users write it) and a git package at a tag."""
    return (
        "packages:\n"
        "  - local: ../packages/local_helpers\n"
        f"  - git: \"{git_url}\"\n"
        "    revision: v1.0.0\n"
    )  # fmt: skip


@pytest.mark.parametrize("package_file", ["packages.yml", "dependencies.yml"])
def test_local_and_git_packages_are_installed_and_used(
    workspace: Workspace, dbt_project: Path, prefect_api: str, tmp_path: Path, package_file: str
) -> None:
    """deps runs first and installs both packages; a model of the project built with their macros."""
    dbt_package(
        tmp_path / "packages" / "local_helpers",
        "local_helpers",
        "{% macro times_two(x) %}({{ x }} * 2){% endmacro %}\n",
    )
    git_url = git_package(tmp_path / "repositories")
    (dbt_project / package_file).write_text(packages_document(git_url), encoding="utf-8")
    (dbt_project / "models" / "package_answer.sql").write_text(MODEL, encoding="utf-8")
    workspace.setup("--blocks-only")

    result = workspace.pipeline("--select", "package_answer")

    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in output
    installed = dbt_project / "dbt_packages"
    assert (installed / "local_helpers" / "macros" / "local_helpers.sql").is_file()
    assert (installed / "git_helpers" / "macros" / "git_helpers.sql").is_file()
    steps = [run.name.rsplit("-", 1)[0] for run in step_runs(all_task_runs(prefect_api, output))]
    assert steps[:4] == ["dbt-deps", "dbt-parse", "dbt-source-freshness", "dbt-seed"], steps
    with duckdb.connect(str(workspace.root / "warehouse" / "dev.duckdb"), read_only=True) as database:
        row = database.execute("select from_local, from_git from main.package_answer").fetchone()
    assert row == (42, 42)


@pytest.mark.parametrize(
    ("case", "problem", "fix"),
    [
        ("no-repository", "git could not clone it", "check its `git:` URL and that this machine can reach it"),
        ("no-revision", "the repository has no revision 'v9.9.9'", "check its `revision:`"),
    ],
    ids=["no-repository", "no-revision"],
)
def test_git_package_that_cannot_be_fetched_is_one_message_naming_it_and_the_fix(
    workspace: Workspace, dbt_project: Path, prefect_api: str, tmp_path: Path, case: str, problem: str, fix: str
) -> None:
    """A git package whose repository or revision does not exist: exit 1 at deps, its URL and the fix once."""
    if case == "no-repository":
        url, revision = (tmp_path / "repositories" / "no_such_package.git").as_uri(), "v1.0.0"
    else:
        url, revision = git_package(tmp_path / "repositories"), "v9.9.9"
    (dbt_project / "packages.yml").write_text(f'packages:\n  - git: "{url}"\n    revision: {revision}\n')
    workspace.setup("--blocks-only")

    result = workspace.pipeline("--retry-delay", "0")

    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    summary = result.stderr.rpartition("pipeline-dbt-complet failed: ")[2]
    assert summary, result.stderr[-4000:]
    assert summary.count(url) == 1, summary
    assert f"declared in {dbt_project / 'packages.yml'} could not be fetched: {problem}" in summary
    assert f"Fix: {fix}" in summary
    assert f"`cd {dbt_project} && dbt deps`" in summary
    assert "Internal Error" not in summary
    assert "Traceback" not in summary
    # Neither dbt's nor git's exception escapes, and the run's own error is said without a traceback.
    assert "Traceback" not in output, output[-6000:]
    steps = [run.name.rsplit("-", 1)[0] for run in step_runs(all_task_runs(prefect_api, output))]
    assert steps == ["dbt-deps"], "the steps after deps do not run"


def test_doctor_says_to_install_packages_then_passes(workspace: Workspace, dbt_project: Path, tmp_path: Path) -> None:
    """Before any run, `dbt parse` fails on packages not installed: the doctor's fix is `dbt deps`, which works."""
    dbt_package(
        tmp_path / "packages" / "local_helpers",
        "local_helpers",
        "{% macro times_two(x) %}({{ x }} * 2){% endmacro %}\n",
    )
    git_url = git_package(tmp_path / "repositories")
    (dbt_project / "packages.yml").write_text(packages_document(git_url), encoding="utf-8")
    (dbt_project / "models" / "package_answer.sql").write_text(MODEL, encoding="utf-8")
    workspace.setup("--blocks-only")

    before = workspace.doctor("--target", "dev")
    assert before.returncode == 1, before.stdout + before.stderr
    assert "[FAIL] dbt parse" in before.stdout
    assert "fix: install the project's packages (a pipeline run does it first, in its deps step)" in before.stdout
    assert f"`cd {dbt_project} && dbt deps`, then run the doctor again" in before.stdout

    subprocess.run([str(DBT), "deps"], cwd=dbt_project, env=workspace.env, check=True, capture_output=True)
    after = workspace.doctor("--target", "dev")
    assert "[ ok ] dbt parse" in after.stdout, after.stdout + after.stderr
    assert "Traceback" not in after.stdout + after.stderr
