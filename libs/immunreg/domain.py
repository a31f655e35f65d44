"""What pure domain code raises when a command cannot be accepted.

Domain modules import only this (and their contracts): no I/O, no HTTP. The
HTTP edge turns these into problem+json responses.
"""

from __future__ import annotations


class DomainError(Exception):
    """A command refused by a business rule; `code` names the rule."""

    status = 422

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class RuleViolation(DomainError):
    """The command breaks a rule (422): e.g. a dose before the minimum interval."""


class Conflict(DomainError):
    """The command conflicts with the current state (409): e.g. already registered."""

    status = 409


class NotFound(DomainError):
    """The aggregate the command is for does not exist (404)."""

    status = 404
