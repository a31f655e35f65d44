"""Where the project keeps its local state (ignored by git)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    """The folder for local databases, broker data, jars and dev keys."""
    return Path(os.environ.get("IMMUNREG_STATE_DIR", REPO_ROOT / ".cache")).resolve()


def local_env_file() -> Path:
    """The file `immunreg infra up` writes the endpoints it started into."""
    return state_dir() / "local.env"


def keys_dir() -> Path:
    """Development keys (JWT signer, citizen-id and data keys, DCC signers).

    `IMMUNREG_KEYS_DIR` gives a run keys of its own, so the test suite never signs
    with, or writes into, the keys `make run` uses.
    """
    configured = os.environ.get("IMMUNREG_KEYS_DIR")
    return Path(configured).resolve() if configured else state_dir() / "keys"
