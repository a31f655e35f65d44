"""The event store's schema.sql upgrades an outbox made by the release before packed
rows: applied at every start, it adds them without touching the rows waiting there."""

from __future__ import annotations

import asyncpg
import pytest

from immunreg.eventstore.database import apply_schema
from immunreg.eventstore.packing import pack, unpack

from ..conftest import SchemaFactory

# The outbox as schema.sql made it before packed rows.
_BEFORE_PACKED = """
DROP TABLE outbox;
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    tx_id       xid8        NOT NULL DEFAULT pg_current_xact_id(),
    topic       text        NOT NULL,
    key         text        NOT NULL,
    payload     bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '[]',
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX outbox_position ON outbox (tx_id, id);
"""

_ROW = "INSERT INTO outbox (topic, key, payload, packed) VALUES ('t', $1, $2, $3)"

_SHAPE = """
SELECT (SELECT array_agg(pg_get_constraintdef(oid) ORDER BY conname) FROM pg_constraint
        WHERE conrelid = 'outbox'::regclass AND contype = 'c'),
       (SELECT attstorage FROM pg_attribute
        WHERE attrelid = 'outbox'::regclass AND attname = 'payload')
"""


async def test_an_outbox_from_before_packed_rows_takes_them_once_the_schema_is_applied(
    make_schema: SchemaFactory,
) -> None:
    schema, pool = await make_schema()
    await pool.execute(_BEFORE_PACKED)
    await pool.execute("INSERT INTO outbox (topic, key, payload) VALUES ('t', 's-1', 'x')")

    await apply_schema(pool, schema)
    messages = pack(["s-2", "s-3"], [b"two", b"three"])
    await pool.execute(_ROW, None, messages, 2)
    with pytest.raises(asyncpg.CheckViolationError):  # a packed row has no key of its own
        await pool.execute(_ROW, "s-2", messages, 2)
    with pytest.raises(asyncpg.CheckViolationError):  # a single message has one
        await pool.execute(_ROW, None, b"x", None)
    shape = await pool.fetchrow(_SHAPE)
    assert shape is not None
    assert shape[1] == b"e", "a packed payload is stored out of line, uncompressed"

    await apply_schema(pool, schema)  # every later start: nothing to do
    assert await pool.fetchrow(_SHAPE) == shape
    rows = await pool.fetch("SELECT key, payload, packed FROM outbox ORDER BY id")
    assert [(r["key"], r["packed"]) for r in rows] == [("s-1", None), (None, 2)]
    assert unpack(rows[1]["payload"]) == [("s-2", b"two"), ("s-3", b"three")]
