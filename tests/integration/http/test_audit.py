"""The audit of reads on a real PostgreSQL: the chain, the append-only trigger, the check
that finds an edited or deleted row, and `immunreg audit verify` as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from immunreg.audit import (
    AUDIT_SQL,
    GENESIS,
    AuditEntry,
    append_read,
    entry_hash,
    read_page,
    verify_chain,
)
from immunreg.eventstore.database import apply_schema
from immunreg.http.auth import Principal, Role

STAFF = Principal(subject="nurse-7", role=Role.SITE_STAFF, site_id="SITE-A")
ADMIN = Principal(subject="registrar-1", role=Role.ADMIN)

# The `make_schema` fixture (tests/integration/conftest.py); this folder is no package.
SchemaFactory = Callable[[], Awaitable[tuple[str, asyncpg.Pool]]]


async def _audited_schema(make_schema: SchemaFactory) -> tuple[str, asyncpg.Pool]:
    schema, pool = await make_schema()
    await apply_schema(pool, schema, [AUDIT_SQL])
    return schema, pool


async def _three_reads(pool: asyncpg.Pool) -> None:
    start = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    route = "GET /v1/citizens/{citizen_id}/doses"
    await append_read(pool, STAFF, route=route, citizen_id="cit_1", at=start)
    await append_read(
        pool,
        STAFF,
        route=route,
        citizen_id="cit_2",
        reason="walk-in, second dose",
        at=start + timedelta(minutes=1),
    )
    await append_read(
        pool, ADMIN, route="GET /v1/doses/{dose_id}", citizen_id="cit_1", resource_id="d-9"
    )


async def test_reads_are_chained_and_the_chain_verifies(make_schema: SchemaFactory) -> None:
    _, pool = await _audited_schema(make_schema)
    await _three_reads(pool)
    rows = await pool.fetch("SELECT seq, previous_hash, hash FROM audit_log ORDER BY seq")
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert rows[0]["previous_hash"] == GENESIS
    assert rows[1]["previous_hash"] == rows[0]["hash"]
    assert rows[2]["previous_hash"] == rows[1]["hash"]
    async with pool.acquire() as conn:
        check = await verify_chain(conn)
    assert check.ok and check.rows == 3

    page = await read_page(pool, citizen_id="cit_2", before=None, limit=10)
    (entry,) = page.items
    assert (entry.subject, entry.role, entry.site_id) == ("nurse-7", "site_staff", "SITE-A")
    assert entry.reason == "walk-in, second dose" and entry.resource_id is None


async def test_update_delete_and_truncate_are_refused(make_schema: SchemaFactory) -> None:
    _, pool = await _audited_schema(make_schema)
    await _three_reads(pool)
    for statement in (
        "UPDATE audit_log SET subject = 'someone-else' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 2",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await pool.execute(statement)
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 3


async def _tamper(pool: asyncpg.Pool, statement: str) -> None:
    """What someone who owns the table can still do: switch the trigger off."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute(statement)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")


@pytest.mark.parametrize(
    ("statement", "broken_at", "problem"),
    [
        ("UPDATE audit_log SET citizen_id = 'cit_9' WHERE seq = 2", 2, "do not match its hash"),
        ("UPDATE audit_log SET reason = NULL WHERE seq = 2", 2, "do not match its hash"),
        ("DELETE FROM audit_log WHERE seq = 2", 3, "row 2 is missing"),
        ("DELETE FROM audit_log WHERE seq = 1", 2, "row 1 is missing"),
    ],
)
async def test_the_chain_check_finds_an_edited_or_deleted_row(
    make_schema: SchemaFactory, statement: str, broken_at: int, problem: str
) -> None:
    _, pool = await _audited_schema(make_schema)
    await _three_reads(pool)
    await _tamper(pool, statement)
    async with pool.acquire() as conn:
        check = await verify_chain(conn)
    assert not check.ok
    assert check.broken_at == broken_at and problem in (check.problem or "")


async def test_a_row_rewritten_with_a_fresh_hash_still_breaks_the_next_link(
    make_schema: SchemaFactory,
) -> None:
    """Recomputing the edited row's own hash does not help: the next row names the old one."""
    _, pool = await _audited_schema(make_schema)
    await _three_reads(pool)
    row = await pool.fetchrow("SELECT * FROM audit_log WHERE seq = 2")
    assert row is not None
    forged = AuditEntry(**{**dict(row), "citizen_id": "cit_9"})
    await _tamper(
        pool,
        f"UPDATE audit_log SET citizen_id = 'cit_9', hash = '{entry_hash(forged)}' WHERE seq = 2",
    )
    async with pool.acquire() as conn:
        check = await verify_chain(conn)
    assert (check.ok, check.broken_at) == (False, 3)
    assert "does not link" in (check.problem or "")


async def test_the_verify_command_exits_1_naming_the_broken_row(
    make_schema: SchemaFactory, dsn: str
) -> None:
    schema, pool = await _audited_schema(make_schema)
    await _three_reads(pool)
    command = [
        str(Path(sys.executable).with_name("immunreg")),
        "audit",
        "verify",
        "administration",
        "--schema",
        schema,
    ]
    env = {**os.environ, "DATABASE_URL": dsn}
    intact = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, check=False
    )
    assert intact.returncode == 0, intact.stderr
    assert "3 rows, chain intact" in intact.stdout
    await _tamper(pool, "UPDATE audit_log SET role = 'admin' WHERE seq = 1")
    broken = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, check=False
    )
    assert broken.returncode == 1
    assert "row 1 its fields do not match its hash" in broken.stdout
