"""Key files on disk, written so that a reader never sees half a key.

Several processes (every service, the CLI, the test session) may create the same
development key at the same moment; each must end up reading the one key that won.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def _temporary_beside(path: Path) -> Path:
    # Same folder, so the link or rename below stays on one file system (and is atomic).
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}")


def write_once(path: Path, data: bytes) -> None:
    """Create `path` holding `data` (mode 0600); if another process got there first, keep theirs.

    The file appears whole: a finished temporary file is hard-linked into place,
    and a link, unlike a rename, fails rather than replace a file that exists.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(path)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def replace_file(path: Path, data: bytes) -> None:
    """Write `path` holding `data`, replacing what is there in one step (a public key
    derived from the private one that won: every writer writes the same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(path)
    temporary.write_bytes(data)
    temporary.replace(path)
