"""Advisory locks: one way to take them, each under the key its caller has always used.

PostgreSQL keys an advisory lock by a bigint, so a lock's name is hashed into one.
Two hashings are in use and both stay as they are: a replica of the previous
release keeps taking its lock under the old key during a rolling deploy, and a
changed key would let an old and a new replica hold "the same" lock at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # database.py takes its DDL lock through this module
    from immunreg.eventstore.database import Connection


class LockKey(Enum):
    """How a lock's name becomes PostgreSQL's key (the SQL applied to the name, $1)."""

    # 32 bits of the name alone: the schema must be in the name where it matters.
    NAME = "hashtext($1)"
    # 64 bits of the schema-qualified name: services sharing a database never collide.
    SCHEMA_AND_NAME = "hashtextextended(current_schema() || ':' || $1, 0)"


async def lock_for_transaction(
    conn: Connection, name: str, *, shared: bool = False, key: LockKey = LockKey.NAME
) -> None:
    """Wait for the lock `name`, held until the transaction ends (shared: by many at once)."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await conn.execute(f"SELECT {function}({key.value})", name)


async def lock_all_for_transaction(
    conn: Connection, names: Sequence[str], *, key: LockKey = LockKey.NAME
) -> None:
    """Wait for each lock in `names`, in the order given, with one statement (one round trip
    however many); each held until the transaction ends, under the key `lock_for_transaction`
    takes it by."""
    if len(names) <= 1:
        for name in names:
            await lock_for_transaction(conn, name, key=key)
        return
    # With ORDER BY, PostgreSQL calls a volatile function of the select list after the
    # sort, row by row: the locks are taken in the callers' order (deadlock-free orders
    # stay so).
    await conn.execute(
        f"SELECT pg_advisory_xact_lock({key.value.replace('$1', 't.name')}) "
        "FROM unnest($1::text[]) WITH ORDINALITY AS t(name, position) ORDER BY t.position",
        list(names),
    )


async def try_lock_for_session(conn: Connection, name: str) -> bool:
    """Take the lock `name` if free, held until released or the connection closes."""
    # A pooled connection is then reset on release, so a lock whose unlock never ran
    # (a cancelled task) does not outlive its holder's use of the connection.
    mark = getattr(conn, "keeps_session_state", None)
    if mark is not None:
        mark()
    return bool(await conn.fetchval(f"SELECT pg_try_advisory_lock({LockKey.NAME.value})", name))


@contextlib.asynccontextmanager
async def session_lock(conn: Connection, name: str) -> AsyncIterator[bool]:
    """The lock `name` held while the block runs, if it was free (the block gets whether)."""
    got = await try_lock_for_session(conn, name)
    try:
        yield got
    finally:
        if got:
            await conn.execute(f"SELECT pg_advisory_unlock({LockKey.NAME.value})", name)
