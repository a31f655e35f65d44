"""The event store, its transactional outbox and the relay that publishes it."""

from immunreg.eventstore.database import apply_schema, create_pool
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.signal import OutboxSignal
from immunreg.eventstore.store import Aggregate, EventStore, Loaded, Outcome

__all__ = [
    "Aggregate",
    "ConcurrencyConflict",
    "EventStore",
    "Loaded",
    "OutboxSignal",
    "Outcome",
    "apply_schema",
    "create_pool",
]
