"""The advisory-lock helpers take the very keys the raw SQL they replaced took.

A replica of the previous release takes its locks with that SQL during a rolling
deploy; if the helper's key differed, both would hold "the same" lock at once.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from immunreg.eventstore.locks import (
    LockKey,
    lock_all_for_transaction,
    lock_for_transaction,
    session_lock,
    try_lock_for_session,
)

from ..conftest import SchemaFactory, unique_name

pytestmark = pytest.mark.integration

PREVIOUS_RELEASE = {
    LockKey.NAME: "SELECT pg_try_advisory_xact_lock(hashtext($1))",
    LockKey.SCHEMA_AND_NAME: (
        "SELECT pg_try_advisory_xact_lock(hashtextextended(current_schema() || ':' || $1, 0))"
    ),
}


async def _free_to_the_previous_release(dsn: str, key: LockKey, name: str) -> bool:
    other = await asyncpg.connect(dsn)
    try:
        async with other.transaction():
            return bool(await other.fetchval(PREVIOUS_RELEASE[key], name))
    finally:
        await other.close()


@pytest.mark.parametrize("key", list(LockKey))
async def test_a_transaction_lock_excludes_the_previous_releases_sql(
    dsn: str, key: LockKey
) -> None:
    name = unique_name("lock")
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await lock_for_transaction(conn, name, key=key)
            assert not await _free_to_the_previous_release(dsn, key, name)
        assert await _free_to_the_previous_release(dsn, key, name)
    finally:
        await conn.close()


async def test_many_transaction_locks_are_taken_in_order_with_one_statement(dsn: str) -> None:
    key = LockKey.SCHEMA_AND_NAME
    first, busy, last = (unique_name(n) for n in ("first", "busy", "last"))
    conn, holder = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    sent: list[str] = []
    conn.add_query_logger(lambda record: sent.append(record.query))
    try:
        await holder.execute("BEGIN")
        await lock_for_transaction(holder, busy, key=key)
        async with conn.transaction():
            waiting = asyncio.create_task(
                lock_all_for_transaction(conn, [first, busy, last], key=key)
            )
            for _ in range(3000):  # until it waits for the second (at most a minute)
                if await _waits_for_a_lock(holder, conn.get_server_pid()):
                    break
                await asyncio.sleep(0.02)
            # Stopped at the second: the first is held, the third not taken yet.
            assert not await _free_to_the_previous_release(dsn, key, first)
            assert await _free_to_the_previous_release(dsn, key, last)
            await holder.execute("ROLLBACK")  # lets the second go
            await waiting
            assert not await _free_to_the_previous_release(dsn, key, last)
        assert len([q for q in sent if "advisory" in q]) == 1
        assert await _free_to_the_previous_release(dsn, key, first)
    finally:
        await conn.close()
        await holder.close()


async def _waits_for_a_lock(conn: asyncpg.Connection, pid: int) -> bool:
    """Whether the backend `pid` is waiting for an advisory lock."""
    return bool(
        await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND pid = $1",
            pid,
        )
    )


async def test_a_session_lock_is_held_for_the_block_only(dsn: str) -> None:
    name = unique_name("leader")
    conn, rival = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        async with session_lock(conn, name) as got:
            assert got
            assert not await _free_to_the_previous_release(dsn, LockKey.NAME, name)
            assert not await try_lock_for_session(rival, name)
        assert await _free_to_the_previous_release(dsn, LockKey.NAME, name)
    finally:
        await conn.close()
        await rival.close()


async def test_a_pooled_connection_released_holding_a_session_lock_lets_it_go(
    make_schema: SchemaFactory, dsn: str
) -> None:
    """Pooled connections skip asyncpg's reset query on release, except one that took a
    session lock: a holder whose unlock never ran (cancelled) must not keep the lock."""
    _, pool = await make_schema()
    name = unique_name("leaked")
    async with pool.acquire() as conn:
        assert await try_lock_for_session(conn, name)  # and never unlocked
    assert await _free_to_the_previous_release(dsn, LockKey.NAME, name)


async def test_a_pooled_connection_released_in_a_transaction_is_rolled_back(
    make_schema: SchemaFactory,
) -> None:
    """Without the reset query, an open transaction is still rolled back on release."""
    _, pool = await make_schema()
    await pool.execute("CREATE TABLE kept (n int)")
    async with pool.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO kept VALUES (1)")
    assert await pool.fetchval("SELECT count(*) FROM kept") == 0
