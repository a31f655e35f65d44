"""The advisory-lock helpers take the very keys the raw SQL they replaced took.

A replica of the previous release takes its locks with that SQL during a rolling
deploy; if the helper's key differed, both would hold "the same" lock at once.
"""

from __future__ import annotations

import asyncpg
import pytest

from immunreg.eventstore.locks import (
    LockKey,
    lock_for_transaction,
    session_lock,
    try_lock_for_session,
)

from ..conftest import unique_name

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
