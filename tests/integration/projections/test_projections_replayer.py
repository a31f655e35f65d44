"""A rebuild's helper process (services/projections/replayer.py): alone, it replays the
history into the new model exactly as the live projector built the live one, and it
stops as soon as its stdin closes (what a rebuild that ends, in any way, does to it)."""

from __future__ import annotations

import asyncio

import asyncpg

from immunreg.eventstore.database import create_pool
from services.projections.models import create_model
from services.projections.projector import begin_replay, finish_replay
from services.projections.rebuild import (
    replay_pool,
    start_helper,
    stop_helpers,
    topic_offsets,
    wait_caught_up,
)

from .conftest import Projections, table_rows
from .history import scripted


async def test_a_helper_process_alone_replays_the_model_and_stops_when_its_stdin_closes(
    projections: Projections, dsn: str, bootstrap: str
) -> None:
    history, _ = scripted(projections.sources)
    await projections.apply(history, history.envelopes, transactions=3)
    live = projections.follower.current
    assert live is not None

    control = await create_pool(dsn, projections.schema, min_size=1, max_size=1)
    try:
        async with control.acquire() as conn:
            schema = await create_model(dsn, conn, projections.schema, "building")
    finally:
        await control.close()
    pool = await replay_pool(dsn, schema)
    try:
        async with pool.acquire() as conn:
            await begin_replay(conn)
        beginnings, ends = await topic_offsets(bootstrap, projections.sources.topics())
        helper = await start_helper(
            dsn, bootstrap, schema, projections.sources, members=1, batch_size=50
        )
        try:
            # Only the helper consumes: its positions must reach the end by themselves.
            await asyncio.wait_for(wait_caught_up(pool, schema, bootstrap, beginnings, ends), 120)
        finally:
            await stop_helpers([helper], seconds=30)
        assert helper.returncode == 0  # it left when its stdin closed; a killed one is -9
        async with pool.acquire() as conn, conn.transaction():
            await finish_replay(conn)
    finally:
        await pool.close()

    db = await asyncpg.connect(dsn)
    try:
        replayed = await table_rows(db, schema)
        assert replayed == await table_rows(db, live.schema)
        assert replayed["doses"] and replayed["coverage_daily"]
    finally:
        await db.close()
