"""Connection pools bound to one service's schema, and applying its DDL."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# What handlers and the event store accept: a plain connection or one from a pool.
Connection = asyncpg.Connection | PoolConnectionProxy

EVENTSTORE_SQL = Path(__file__).with_name("schema.sql")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(schema: str) -> str:
    """Refuse schema names that would need quoting (they are interpolated into DDL)."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    return schema


async def create_pool(
    dsn: str, schema: str, *, min_size: int = 2, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose connections see the service's schema first on the search path."""
    check_schema_name(schema)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": f"{schema},public", "application_name": schema},
    )
    assert pool is not None
    return pool


async def apply_schema(pool: asyncpg.Pool, schema: str, files: Iterable[Path] = ()) -> None:
    """Create the schema and apply the event-store DDL and the service's own files.

    An advisory lock serialises concurrent starts of the same service.
    """
    check_schema_name(schema)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"ddl:{schema}")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(f"SET LOCAL search_path TO {schema}, public")
        for path in (EVENTSTORE_SQL, *files):
            await conn.execute(path.read_text())
