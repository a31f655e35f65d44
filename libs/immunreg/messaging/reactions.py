"""A service's reactions: which handler runs when which event arrives.

One explicit table from event type to handler, so a reader finds every
reaction of a service in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from immunreg.contracts.envelope import Context, Envelope, Event
from immunreg.eventstore.database import Connection

E = TypeVar("E", bound=Event)
Handler = Callable[[Connection, Any, Envelope], Awaitable[None]]


class Reactions:
    """Handlers by topic and event type; events of other types are skipped."""

    def __init__(self) -> None:
        self._table: dict[str, dict[str, tuple[Context, Handler]]] = {}

    def on(
        self, context: Context, event_type: type[E]
    ) -> Callable[
        [Callable[[Connection, E, Envelope], Awaitable[None]]],
        Callable[[Connection, E, Envelope], Awaitable[None]],
    ]:
        """Decorator: run the handler (in the consumer's transaction) for this event type."""

        def register(
            handler: Callable[[Connection, E, Envelope], Awaitable[None]],
        ) -> Callable[[Connection, E, Envelope], Awaitable[None]]:
            self.add(context, event_type, handler)
            return handler

        return register

    def add(self, context: Context, event_type: type[Event], handler: Handler) -> None:
        """Register a handler; one per event type and topic."""
        if not context.knows(event_type.type_name()):
            raise ValueError(f"{event_type.__name__} is not an event of {context.name}")
        by_type = self._table.setdefault(context.topic, {})
        if event_type.type_name() in by_type:
            raise ValueError(f"a handler for {event_type.__name__} is already registered")
        by_type[event_type.type_name()] = (context, handler)

    @property
    def topics(self) -> list[str]:
        """The topics these reactions subscribe to."""
        return sorted(self._table)

    def lookup(self, topic: str, type_name: str) -> tuple[Context, Handler] | None:
        """The handler for an event type on a topic, or None to skip it."""
        return self._table.get(topic, {}).get(type_name)
