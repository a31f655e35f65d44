"""A service's reactions: which handler runs when which event arrives.

One explicit table from event type to handler, so a reader finds every
reaction of a service in one place. A handler's effects are its writes through
the `conn` it is given: the consumer may run it, roll the batch back (another
message in it failed) and run it again, so anything else it did (a send, a
counter) would happen twice.

Reactions may opt in to batches (`Reactions(batch=...)`): their handlers only
record in memory what each event changes, and a `BatchApplier` writes a whole
partition batch at once (see `EventConsumer`). Read models that replay millions
of events use it; a handler that writes through `conn` needs none of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from immunreg.contracts.envelope import Context, Envelope, Event
from immunreg.eventstore.database import Connection

E = TypeVar("E", bound=Event)
T = TypeVar("T")
Handler = Callable[[Connection, Any, Envelope], Awaitable[None]]


class BatchApplier(Protocol):
    """Writes what the handlers of one batch recorded, in the batch's transaction.

    The consumer calls `begin()`, then the handler of each fresh event of a
    partition batch, then `flush(conn)` before it stores the position. When
    anything but an infrastructure error is raised, the transaction is rolled
    back, `discard()` is called, and the batch is applied again one message at
    a time (`begin`, handler, `flush` inside each message's savepoint), so a bad
    message is retried and dead-lettered on its own.
    """

    def begin(self) -> None:
        """Start recording a new batch."""

    async def flush(self, conn: Connection) -> None:
        """Write what was recorded since `begin()`."""

    def discard(self) -> None:
        """Forget what was recorded since `begin()`."""


class Reactions:
    """Handlers by topic and event type; events of other types are skipped."""

    def __init__(self, batch: BatchApplier | None = None) -> None:
        self._table: dict[str, dict[str, tuple[Context, Handler]]] = {}
        self.batch = batch

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


class Provided(Generic[T]):
    """What the running app gives its reactions, which themselves receive only a connection.

    The table of reactions is built when the service is declared, before the app has
    an event store or configuration; a service resource fills this at start-up
    (`async with provided.providing(value)`) and empties it at shutdown. Asked before
    then, it raises ConnectionError: the consumer counts that as infrastructure and
    reads the batch again later, instead of dead-lettering a message that is fine.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._value: T | None = None

    def __call__(self) -> T:
        if self._value is None:
            raise ConnectionError(f"{self.what} is not available yet (the app has not started)")
        return self._value

    @contextlib.asynccontextmanager
    async def providing(self, value: T) -> AsyncIterator[None]:
        """Provide value for the life of the block (a resource's start-up to shutdown)."""
        self._value = value
        try:
            yield
        finally:
            self._value = None
