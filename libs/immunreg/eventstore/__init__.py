"""The event store, its transactional outbox and the relay that publishes it.

Aggregate, Loaded and Outcome are pure and live in immunreg.domain.
"""

from immunreg.eventstore.database import apply_schema, create_pool
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.signal import OutboxSignal
from immunreg.eventstore.store import EventStore, StreamStore

__all__ = [
    "ConcurrencyConflict",
    "EventStore",
    "OutboxSignal",
    "StreamStore",
    "apply_schema",
    "create_pool",
]
