"""The event store contract (tests/eventstore_contract.py) on the real PostgreSQL."""

from __future__ import annotations

import pytest

from eventstore_contract import Backend, EventStoreContract
from immunreg.eventstore import EventStore

from ..conftest import SchemaFactory


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    async def backend(self, make_schema: SchemaFactory) -> Backend:
        _, pool = await make_schema()

        async def outbox() -> list[tuple[str, str, bytes]]:
            rows = await pool.fetch("SELECT topic, key, payload FROM outbox ORDER BY id")
            return [(row["topic"], row["key"], bytes(row["payload"])) for row in rows]

        return Backend(EventStore(pool), outbox)
