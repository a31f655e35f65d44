"""Notifications' schema.sql upgrades a database made by an older one: applied at every
start, it widens what an existing table accepts without touching an up-to-date one."""

from __future__ import annotations

import asyncpg
import pytest

from immunreg.eventstore.database import apply_schema
from services.notifications.app import build_service

from ..conftest import SchemaFactory

# The appointments table as schema.sql made it before 'missed'.
_BEFORE_MISSED = """
CREATE TABLE appointments (
    appointment_id text PRIMARY KEY,
    citizen_id     text NOT NULL,
    site_id        text NOT NULL,
    day            date NOT NULL,
    status         text NOT NULL CHECK (status IN ('booked', 'cancelled', 'done'))
)
"""

_ROW = "INSERT INTO appointments VALUES ($1, 'c-1', 'SITE-1', '2026-03-11', $2)"

_CHECK = """
SELECT oid, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = 'appointments'::regclass AND contype = 'c'
"""


async def test_an_old_appointments_table_accepts_missed_once_the_schema_is_applied(
    make_schema: SchemaFactory,
) -> None:
    schema, pool = await make_schema()
    await pool.execute(_BEFORE_MISSED)
    await pool.execute(_ROW, "a-booked", "booked")
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(_ROW, "a-missed", "missed")

    files = build_service().schema_files
    await apply_schema(pool, schema, files)
    await pool.execute(_ROW, "a-missed", "missed")
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(_ROW, "a-bogus", "bogus")
    [widened] = await pool.fetch(_CHECK)

    await apply_schema(pool, schema, files)  # every later start: nothing to do
    assert await pool.fetch(_CHECK) == [widened]
    assert await pool.fetchval("SELECT count(*) FROM appointments") == 2
