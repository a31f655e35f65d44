"""The event store contract (tests/eventstore_contract.py) on the real PostgreSQL."""

from __future__ import annotations

import pytest

from eventstore_contract import Backend, EventStoreContract
from immunreg.eventstore import EventStore
from immunreg.eventstore.packing import unpack

from ..conftest import SchemaFactory


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    async def backend(self, make_schema: SchemaFactory) -> Backend:
        _, pool = await make_schema()

        async def outbox() -> list[tuple[str, str, bytes]]:
            # A packed row stands for its messages, in order (what the relay publishes).
            rows = await pool.fetch("SELECT topic, key, payload, packed FROM outbox ORDER BY id")
            messages: list[tuple[str, str, bytes]] = []
            for row in rows:
                if row["packed"] is None:
                    messages.append((row["topic"], row["key"], bytes(row["payload"])))
                    continue
                unpacked = unpack(row["payload"])
                assert len(unpacked) == row["packed"] and row["key"] is None
                messages.extend((row["topic"], key, value) for key, value in unpacked)
            return messages

        return Backend(EventStore(pool), outbox)
