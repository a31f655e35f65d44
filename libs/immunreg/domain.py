"""The pure half of event sourcing: aggregates, what a command did, and refusals.

Domain modules import only this (and their contracts): no I/O, no HTTP, so a
service's `domain.py` loads without asyncpg, aiohttp or Kafka. The event store
(immunreg.eventstore) runs these aggregates; the HTTP edge turns the errors
into problem+json responses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from immunreg.contracts.envelope import Context, Envelope, Event

S = TypeVar("S")
C = TypeVar("C")

Decide = Callable[[S, C], Sequence[Event]]
"""`decide(state, command) -> events`: refuses by raising a DomainError."""

Evolve = Callable[[S, Any], S]
"""`evolve(state, event) -> state`: never refuses (events are facts)."""


@dataclass(frozen=True)
class Aggregate(Generic[S, C]):
    """An aggregate's pure functions and how its stream is stored.

    `decide(state, command) -> events` refuses by raising a DomainError;
    `evolve(state, event) -> state` never refuses (events are facts).
    """

    stream_type: str
    context: Context
    initial: Callable[[], S]
    evolve: Evolve[S]
    decide: Decide[S, C]
    state_type: type[S] | None = None
    snapshot_every: int = 100


@dataclass(frozen=True)
class Loaded(Generic[S]):
    """An aggregate's state as of `version` (0: the stream does not exist yet)."""

    state: S
    version: int


@dataclass(frozen=True)
class Outcome(Generic[S]):
    """What a command did: the events appended, the new state and version."""

    state: S
    version: int
    events: list[Envelope]


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


class PersonalDataErased(DomainError):
    """The citizen's personal data was erased (410 `citizen_erased`): what is asked of them
    is gone for good. The one refusal every service gives for an erased citizen; the HTTP
    edge answers it as `Problem.citizen_erased()`, which is made from it."""

    status = 410

    def __init__(self) -> None:
        super().__init__(
            "citizen_erased",
            "the citizen's personal data was erased: nothing of theirs is served or written",
        )
