"""The event store's schema upgrades a database an earlier release created.

schema.sql is applied at every start; what a release stops keeping (an index) must go
from an existing schema too, and applying it again must still be harmless.
"""

from __future__ import annotations

import asyncpg
import pytest

from immunreg.eventstore.database import apply_schema

from ..conftest import SchemaFactory

pytestmark = pytest.mark.integration

# Indexes the events table had before; each was written on every append.
DROPPED = {
    "events_type_recorded": "CREATE INDEX events_type_recorded ON events (type, recorded_at)"
}


async def _indexes(pool: asyncpg.Pool, schema: str) -> set[str]:
    rows = await pool.fetch(
        "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'events'", schema
    )
    return {r["indexname"] for r in rows}


async def test_an_earlier_release_schema_loses_the_dropped_indexes(
    make_schema: SchemaFactory,
) -> None:
    schema, pool = await make_schema()
    for ddl in DROPPED.values():
        await pool.execute(ddl)  # the schema as the earlier release left it
    assert set(DROPPED) <= await _indexes(pool, schema)

    await apply_schema(pool, schema)  # the next start
    await apply_schema(pool, schema)  # and the one after: still idempotent

    left = await _indexes(pool, schema)
    assert not set(DROPPED) & left
    # What the store's reads and its guarantees need stays.
    assert {"events_pkey", "events_event_id_key"} <= left
