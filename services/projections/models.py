"""Read models side by side: which one answers, and the lifecycle of each.

- The service's schema (`projections`) holds `read_models`, the pointer: every
  model schema and its status; exactly one is `active`.
- A model is a schema `<service schema>_m<yyyymmddhhmmss><hex>` with the
  event-store tables and model.sql. Its consumer group is its schema name, and
  its positions and processed event ids live in it, written in the same
  transactions as its rows.
- rebuild.py builds a new model beside the active one and swaps it in;
  follower.py keeps the live service reading from whichever model is active.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from immunreg.eventstore.database import (
    Connection,
    apply_schema,
    check_schema_name,
    create_pool,
)
from immunreg.eventstore.locks import lock_for_transaction

log = logging.getLogger(__name__)

CONTROL_SQL = Path(__file__).with_name("schema.sql")
MODEL_SQL = Path(__file__).with_name("model.sql")

# The tables of a model that hold its answers (compared by the rebuild test).
MODEL_TABLES = (
    "doses",
    "appointments",
    "citizens",
    "sites",
    "site_day_capacity",
    "stock_levels",
    "adverse_events",
    "certificates",
    "daily_doses",
    "site_daily_doses",
    "booking_days",
    "municipality_queue",
    "waste_daily",
    "coverage_daily",
    "coverage_weeks",
    "coverage_before",
    "model_state",
)


def model_name(control: str, now: datetime | None = None) -> str:
    """A new model schema's name: the service schema, `_m`, a UTC timestamp and 4 hex."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    return check_schema_name(f"{control}_m{stamp}{secrets.token_hex(2)}")


async def prepare_control(pool: asyncpg.Pool, control: str) -> None:
    """The service schema with its `read_models` table (what create_app also applies)."""
    await apply_schema(pool, control, [CONTROL_SQL])


async def create_model(dsn: str, control_conn: Connection, control: str, status: str) -> str:
    """A new, empty model schema, registered in `read_models` with `status`."""
    schema = model_name(control)
    await control_conn.execute(
        "INSERT INTO read_models (schema_name, status) VALUES ($1, $2)", schema, status
    )
    pool = await create_pool(dsn, schema, min_size=1, max_size=1)
    try:
        await apply_schema(pool, schema, [MODEL_SQL])
    finally:
        await pool.close()
    return schema


async def active_model(control_pool: asyncpg.Pool) -> str | None:
    """The schema of the model that answers now."""
    found: str | None = await control_pool.fetchval(
        "SELECT schema_name FROM read_models WHERE status = 'active'"
    )
    return found


async def ensure_active_model(dsn: str, control_pool: asyncpg.Pool, control: str) -> str:
    """The active model, creating the first one (empty: it replays from offset 0)."""
    async with control_pool.acquire() as conn, conn.transaction():
        await lock_for_transaction(conn, f"models:{control}")
        schema: str | None = await conn.fetchval(
            "SELECT schema_name FROM read_models WHERE status = 'active'"
        )
        if schema is None:
            schema = await create_model(dsn, conn, control, "building")
            await _activate(conn, schema)
        return schema


async def _activate(conn: Connection, schema: str) -> str | None:
    retired: str | None = await conn.fetchval(
        "UPDATE read_models SET status = 'retired', retired_at = now() "
        "WHERE status = 'active' RETURNING schema_name"
    )
    updated = await conn.execute(
        "UPDATE read_models SET status = 'active', activated_at = now() "
        "WHERE schema_name = $1 AND status = 'building'",
        schema,
    )
    if updated != "UPDATE 1":
        raise RuntimeError(f"read model {schema} is not being built; not activated")
    return retired


async def activate(control_pool: asyncpg.Pool, schema: str) -> str | None:
    """Swap: retire the active model and activate `schema`, atomically. Returns the retired."""
    async with control_pool.acquire() as conn, conn.transaction():
        control = await conn.fetchval("SELECT current_schema()")
        await lock_for_transaction(conn, f"models:{control}")
        return await _activate(conn, schema)


async def drop_model(control_pool: asyncpg.Pool, schema: str, status: str = "dropped") -> None:
    """Drop a model's schema (never the active one) and note it in `read_models`."""
    check_schema_name(schema)
    async with control_pool.acquire() as conn, conn.transaction():
        current = await conn.fetchval(
            "SELECT status FROM read_models WHERE schema_name = $1 FOR UPDATE", schema
        )
        if current == "active":
            raise RuntimeError(f"{schema} is the active read model; not dropped")
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.execute(
            "UPDATE read_models SET status = $2 WHERE schema_name = $1", schema, status
        )


async def drop_all(dsn: str, control: str) -> None:
    """Drop every model of a service schema and the schema itself (tests, benchmarks)."""
    check_schema_name(control)
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{control}.read_models")
        names = (
            [r[0] for r in await conn.fetch(f"SELECT schema_name FROM {control}.read_models")]
            if exists
            else []
        )
        # Sessions left behind by a stuck shutdown would block DROP SCHEMA forever:
        # end them (pools name their sessions after their schema) and bound the wait.
        await conn.execute("SET lock_timeout = '30s'")
        for schema in [*names, control]:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                "AND application_name LIKE $1",
                schema.replace("_", "\\_") + "%",
            )
        for schema in names:
            await conn.execute(f"DROP SCHEMA IF EXISTS {check_schema_name(schema)} CASCADE")
        await conn.execute(f"DROP SCHEMA IF EXISTS {control} CASCADE")
    finally:
        await conn.close()
