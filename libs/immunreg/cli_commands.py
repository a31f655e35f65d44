"""Further `immunreg` subcommands (tokens, services); kept apart so cli.py stays small."""

from __future__ import annotations

from typing import Any


def register_commands(sub: Any) -> None:
    """Add the subcommands that live outside cli.py."""
    del sub
