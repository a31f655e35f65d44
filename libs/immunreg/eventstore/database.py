"""Connection pools bound to one service's schema, and applying its DDL."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

from immunreg.config import DatabaseTimeouts
from immunreg.eventstore.locks import lock_for_transaction

# What handlers and the event store accept: a plain connection or one from a pool.
Connection = asyncpg.Connection | PoolConnectionProxy
View = TypeVar("View")


def view_of(row: asyncpg.Record | Mapping[str, Any], view: type[View]) -> View:
    """A read-model row as an API view: columns by name, checked against the view's types.

    The one way rows become views, so a column renamed or retyped in SQL fails loudly
    here instead of reaching a client as a wrong field.
    """
    return msgspec.convert(dict(row), view)


EVENTSTORE_SQL = Path(__file__).with_name("schema.sql")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(schema: str) -> str:
    """Refuse schema names that would need quoting (they are interpolated into DDL)."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    return schema


class PooledConnection(asyncpg.Connection):
    """A pool's connection that skips asyncpg's reset query on release unless it needs it.

    asyncpg resets every released connection with one more round trip (unlock advisory
    locks, close cursors, UNLISTEN, RESET ALL): about one statement in five of a
    request. Pooled connections keep no session state but session advisory locks
    (`locks.try_lock_for_session`, which marks the connection), cursors (closed with
    their transaction) and SET LOCAL (gone with it); an open transaction is rolled back
    on release whatever this says. So only a marked connection pays for the reset.
    """

    _keeps_session_state = False

    def keeps_session_state(self) -> None:
        """Reset this connection fully on its next release (it took session state)."""
        self._keeps_session_state = True

    def get_reset_query(self) -> str:
        if not self._keeps_session_state:
            return ""
        self._keeps_session_state = False
        query: str = super().get_reset_query()
        return query


class BoundedPool(asyncpg.Pool):
    """A pool whose acquire (and so every pool.fetch...) waits at most `acquire_timeout`.

    asyncpg's own default is to wait for ever, and its shortcuts (pool.fetchval)
    take no acquire timeout; a release then defaults to the same bound.
    """

    def __init__(self, *args: Any, acquire_timeout: float | None, **kwargs: Any) -> None:
        self.acquire_timeout = acquire_timeout
        super().__init__(*args, **kwargs)

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


def _milliseconds(seconds: float | None) -> str:
    return "0" if seconds is None else str(max(int(seconds * 1000), 1))


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    timeouts: DatabaseTimeouts | None = None,
    settings: Mapping[str, str] | None = None,
) -> asyncpg.Pool:
    """A pool whose connections see the service's schema first on the search path.

    With `timeouts`, no wait for the database is unbounded (see DatabaseTimeouts);
    without, asyncpg's defaults apply (tools and tests that may run long statements).
    `settings`: more server settings for every connection.
    """
    check_schema_name(schema)
    server_settings = {
        "search_path": f"{schema},public",
        "application_name": schema,
        **(settings or {}),
    }
    options: dict[str, Any] = {}
    acquire_timeout = None
    if timeouts is not None:
        server_settings["statement_timeout"] = _milliseconds(timeouts.statement)
        server_settings["idle_in_transaction_session_timeout"] = _milliseconds(
            timeouts.idle_in_transaction
        )
        if timeouts.connect is not None:
            options["timeout"] = timeouts.connect
        if timeouts.statement is not None:
            # The server cancels a slow statement itself; this is for a server that
            # answers nothing at all (hung, or a network that drops packets).
            options["command_timeout"] = timeouts.statement + 1.0
        acquire_timeout = timeouts.acquire
    pool = BoundedPool(
        dsn,
        acquire_timeout=acquire_timeout,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        setup=None,
        init=None,
        reset=None,
        loop=None,
        connection_class=PooledConnection,
        record_class=asyncpg.Record,
        server_settings=server_settings,
        **options,
    )
    await pool
    return pool


async def apply_schema(pool: asyncpg.Pool, schema: str, files: Iterable[Path] = ()) -> None:
    """Create the schema and apply the event-store DDL and the service's own files.

    An advisory lock serialises concurrent starts of the same service.
    """
    check_schema_name(schema)
    async with pool.acquire() as conn, conn.transaction():
        # DDL on a large table may rightly take longer than a request's statement timeout.
        await conn.execute("SET LOCAL statement_timeout = 0")
        await lock_for_transaction(conn, f"ddl:{schema}")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(f"SET LOCAL search_path TO {schema}, public")
        for path in (EVENTSTORE_SQL, *files):
            await conn.execute(path.read_text())
