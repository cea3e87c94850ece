"""Files written whole or not at all (dbt_pipeline/files.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dbt_pipeline.files import write_atomically


def test_a_file_is_replaced_whole_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("old", encoding="utf-8")
    write_atomically(path, "new")
    assert path.read_text(encoding="utf-8") == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry.name for entry in tmp_path.iterdir()] == ["summary.json"]


def test_a_write_that_fails_halfway_leaves_the_old_file_and_nothing_else(tmp_path: Path) -> None:
    """Here the text cannot be encoded; on a full disk the system refuses the bytes. Either way the reader still
    finds the old file, whole, and no temporary file is left beside it."""
    path = tmp_path / "summary.json"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        write_atomically(path, "x" * 100_000 + "\udc80")
    assert path.read_text(encoding="utf-8") == "old"
    assert [entry.name for entry in tmp_path.iterdir()] == ["summary.json"]
