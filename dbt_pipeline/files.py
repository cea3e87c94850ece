"""Files that a reader must see whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` in one replace, readable by its owner only: a reader sees the old file or the new
    one, never half of it, and a write that fails (a full disk) leaves no partial file behind.

    The new file is created beside `path` (a rename does not cross file systems) with `mkstemp`'s mode, 0600:
    a profiles.yml may name a key file.
    """
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
