"""The local dbt `profiles.yml`, so that `cd dbt && dbt run --target dev` works by hand.

It is written into each dbt project directory (dbt looks there first), holds one output per
environment of that project, and keeps outputs it does not manage. It never holds a secret: a
BigQuery output names the key *file*, or uses Application Default Credentials.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dbt_pipeline.errors import ConfigError
from dbt_pipeline.profile_blocks import configs_data
from dbt_pipeline.profiles import profile_outputs, write_private_file
from infrastructure.setup_profiles.blocks import Action, ResolvedTarget

HEADER = (
    "# Written by `python -m infrastructure.setup_profiles` from infrastructure/environments.yaml.\n"
    "# Edit that file and run the setup again rather than editing this one.\n"
)


@dataclass(frozen=True)
class ProfilesFileChange:
    """One profiles.yml to write: where, what, and which targets it holds or had to skip."""

    path: Path
    action: Action
    text: str
    targets: list[str]
    skipped: dict[str, str] = field(default_factory=dict)

    def apply(self) -> None:
        """Write the file if it changed (atomically, owner-only: it may name a key file)."""
        if self.action in (Action.CREATE, Action.UPDATE):
            write_private_file(self.path, self.text)


def plan_profiles_files(resolved: list[ResolvedTarget], *, keyfile: Path | None) -> list[ProfilesFileChange]:
    """One change per dbt project among the resolved targets."""
    by_project: dict[Path, list[ResolvedTarget]] = defaultdict(list)
    for target in resolved:
        by_project[target.project.path].append(target)
    return [_plan_one(project_targets, keyfile=keyfile) for project_targets in by_project.values()]


def _plan_one(targets: list[ResolvedTarget], *, keyfile: Path | None) -> ProfilesFileChange:
    project = targets[0].project
    path = project.path / "profiles.yml"
    existing_text = path.read_text(encoding="utf-8") if path.is_file() else None
    document = _read(path, existing_text)
    profile = document.get(project.profile) or {}
    outputs: dict[str, Any] = dict(profile.get("outputs") or {})
    skipped = {}
    for target in targets:
        if target.configs is None:
            skipped[target.environment.name] = target.skip_reason
        else:
            outputs[target.environment.name] = profile_outputs(configs_data(target.configs), keyfile=keyfile)
    default_target = profile.get("target") or ("dev" if "dev" in outputs else next(iter(outputs), None))
    if outputs:
        document[project.profile] = {"target": default_target, "outputs": outputs}
    text = HEADER + yaml.safe_dump(document, sort_keys=False)
    if existing_text is None:
        action = Action.CREATE if outputs else Action.SKIP
    else:
        action = Action.UNCHANGED if existing_text == text else Action.UPDATE
    return ProfilesFileChange(path, action, text, sorted(outputs), skipped)


def _read(path: Path, text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        msg = f"{path} is not valid YAML ({error}). Fix or delete it, then run the setup again."
        raise ConfigError(msg) from None
    if not isinstance(document, dict):
        msg = f"{path} is not a profiles.yml (expected a mapping of profiles). Fix or delete it."
        raise ConfigError(msg)
    return document
