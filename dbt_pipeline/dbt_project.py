"""What the pipeline needs to know about a dbt project before running it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from dbt_pipeline.errors import DbtProjectError

PACKAGE_FILES = ("packages.yml", "dependencies.yml")


def target_folder(project_path: Path, target: str) -> Path:
    """The folder of a target's dbt artifacts (manifest.json, run_results.json) and of its runs' reports."""
    return project_path / "target" / target


def reports_folder(project_path: Path, target: str) -> Path:
    """Where a target's runs keep their reports, timelines and per-step results: a folder per flow run."""
    return target_folder(project_path, target) / "runs"


@dataclass(frozen=True)
class DbtProject:
    """A dbt project on disk.

    Attributes:
        path: The project directory (holding dbt_project.yml).
        name: The project's `name`.
        profile: The profile its dbt_project.yml asks for: the rendered profiles.yml uses this name,
            so the pipeline runs any project, whatever profile name it declares.
        has_packages: Whether it declares packages, so `dbt deps` has something to do.
    """

    path: Path
    name: str
    profile: str
    has_packages: bool

    def target_path(self, target: str) -> Path:
        """The folder of a target's dbt artifacts (manifest.json, run_results.json, its runs): one per target."""
        return target_folder(self.path, target)

    @property
    def package_files(self) -> tuple[Path, ...]:
        """The files declaring its packages (packages.yml, dependencies.yml), for messages that say where to fix."""
        return tuple(self.path / file for file in PACKAGE_FILES if (self.path / file).is_file())

    @classmethod
    def load(cls, path: Path, *, fix: str = "Fix dbt_project_dir in the environments file.") -> DbtProject:
        """Read the project at `path`, or say precisely why it is not one; `fix` says where to correct it."""
        path = path.expanduser().resolve()
        project_file = path / "dbt_project.yml"
        if not path.is_dir():
            msg = f"dbt project directory not found: {path}. {fix}"
            raise DbtProjectError(msg)
        if not project_file.is_file():
            msg = f"{path} is not a dbt project: it has no dbt_project.yml. {fix}"
            raise DbtProjectError(msg)
        try:
            config = yaml.safe_load(project_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            msg = f"{project_file} is not valid YAML: {error}"
            raise DbtProjectError(msg) from None
        if not isinstance(config, dict) or not config.get("name"):
            msg = f"{project_file} has no 'name': it is not a valid dbt project file."
            raise DbtProjectError(msg)
        name = str(config["name"])
        return cls(
            path=path,
            name=name,
            # dbt refuses a project without `profile`; we pass --profile, so such a project runs too.
            profile=str(config.get("profile") or name),
            has_packages=any((path / file).is_file() for file in PACKAGE_FILES),
        )
