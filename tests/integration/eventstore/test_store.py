"""The event store against the real PostgreSQL: concurrency, snapshots, atomic outbox."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from immunreg.eventstore import ConcurrencyConflict, EventStore
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict as Conflict

from ..conftest import SchemaFactory, unique_name
from ..support.tally import Add, Counted, tally_aggregate, tally_context


async def test_two_writers_at_the_same_version_one_wins(make_schema: SchemaFactory) -> None:
    _, pool = await make_schema()
    store = EventStore(pool)
    ctx = tally_context(unique_name())
    await store.append("tally-1", "Tally", 0, [Counted(amount=1)], context=ctx)

    results = await asyncio.gather(
        store.append("tally-1", "Tally", 1, [Counted(amount=10)], context=ctx),
        store.append("tally-1", "Tally", 1, [Counted(amount=20)], context=ctx),
        return_exceptions=True,
    )

    wins = [r for r in results if isinstance(r, list)]
    losses = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert len(wins) == 1 and len(losses) == 1
    stored = await store.load("tally-1")
    assert [e.version for e in stored] == [1, 2]
    assert ctx.decode(stored[1].data) == ctx.decode(wins[0][0].data)
    # The loser wrote nothing, not even an outbox row.
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 2


async def test_expected_version_ahead_of_the_stream_is_a_conflict(
    make_schema: SchemaFactory,
) -> None:
    _, pool = await make_schema()
    store = EventStore(pool)
    ctx = tally_context(unique_name())
    with pytest.raises(Conflict):
        await store.append("tally-x", "Tally", 3, [Counted(amount=1)], context=ctx)
    assert await pool.fetchval("SELECT count(*) FROM events") == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_concurrent_commands_are_retried_by_re_deciding(make_schema: SchemaFactory) -> None:
    _, pool = await make_schema()
    store = EventStore(pool)
    aggregate = tally_aggregate(tally_context(unique_name()))

    await asyncio.gather(
        *(store.execute(aggregate, "tally-2", Add(amount=1), attempts=50) for _ in range(20))
    )

    loaded = await store.load_state(aggregate, "tally-2")
    assert loaded.version == 20
    assert loaded.state.total == 20


async def test_if_match_with_a_stale_version_is_not_retried(make_schema: SchemaFactory) -> None:
    _, pool = await make_schema()
    store = EventStore(pool)
    aggregate = tally_aggregate(tally_context(unique_name()))
    await store.execute(aggregate, "tally-3", Add(amount=1))
    await store.execute(aggregate, "tally-3", Add(amount=1))

    with pytest.raises(Conflict):
        await store.execute(aggregate, "tally-3", Add(amount=5), expected_version=1)
    assert (await store.load_state(aggregate, "tally-3")).state.total == 2


async def test_snapshots_give_the_same_state_as_a_full_replay(make_schema: SchemaFactory) -> None:
    _, pool = await make_schema()
    store = EventStore(pool)
    ctx = tally_context(unique_name())
    with_snapshots = tally_aggregate(ctx, snapshot_every=10)
    for i in range(1, 26):
        await store.execute(with_snapshots, "tally-4", Add(amount=i))

    snap_version = await pool.fetchval("SELECT version FROM snapshots WHERE stream_id = 'tally-4'")
    assert snap_version == 20
    from_snapshot = await store.load_state(with_snapshots, "tally-4")
    no_snapshots = dataclasses.replace(with_snapshots, state_type=None, snapshot_every=0)
    replayed = await store.load_state(no_snapshots, "tally-4")
    assert from_snapshot == replayed
    assert replayed.state.total == sum(range(1, 26)) and replayed.version == 25


async def test_append_in_a_failed_transaction_leaves_nothing(make_schema: SchemaFactory) -> None:
    _, pool = await make_schema()
    store = EventStore(pool)
    ctx = tally_context(unique_name())

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.transaction() as conn:
            await store.append("tally-5", "Tally", 0, [Counted(amount=1)], context=ctx, conn=conn)
            raise Boom

    assert await pool.fetchval("SELECT count(*) FROM events") == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_conflict_on_one_stream_rolls_back_every_stream_of_the_transaction(
    make_schema: SchemaFactory,
) -> None:
    _, pool = await make_schema()
    store = EventStore(pool)
    aggregate = tally_aggregate(tally_context(unique_name()))
    await store.execute(aggregate, "busy", Add(amount=1))
    runs = 0

    async def move(conn: Connection) -> None:
        nonlocal runs
        runs += 1
        await store.execute_in(conn, aggregate, "quiet", Add(amount=5))
        if runs == 1:
            # Someone else appends to "busy" between our load and our append.
            await store.execute(aggregate, "busy", Add(amount=100))
        loaded = await store.load_state(aggregate, "busy", conn)
        stale = dataclasses.replace(loaded, version=1) if runs == 1 else loaded
        await store.decide_and_append(conn, aggregate, "busy", stale, Add(amount=5))

    await store.transact(move)

    assert runs == 2, "the conflict must re-run the whole unit of work"
    assert (await store.load_state(aggregate, "quiet")).state.total == 5, "no double append"
    assert (await store.load_state(aggregate, "busy")).state.total == 106
