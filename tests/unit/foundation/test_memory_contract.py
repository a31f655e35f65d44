"""The event store contract (tests/eventstore_contract.py) on the in-memory recorder."""

from __future__ import annotations

import pytest

from eventstore_contract import Backend, EventStoreContract
from immunreg.eventstore.memory import InMemoryEventStore


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def backend(self) -> Backend:
        store = InMemoryEventStore()

        async def outbox() -> list[tuple[str, str, bytes]]:
            return [(row.topic, row.key, row.payload) for row in store.memory.outbox]

        return Backend(store, outbox)
