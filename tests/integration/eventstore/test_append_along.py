"""An append with other writes in its statement (`Along`, `EventStore.append_planned`):
the events, their outbox rows and the other writes go together or, when the gate yields
no row, none of them."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from immunreg.contracts.envelope import Context
from immunreg.domain import Loaded
from immunreg.eventstore import EventStore
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.postgres import Along
from tally import Add, TallyState, tally_aggregate, tally_context

from ..conftest import SchemaFactory


def _along(claim: str) -> Along:
    # A claim on a unique name is the gate; a row beside it is written only through it.
    return Along(
        [
            (
                "claimed",
                "INSERT INTO names (name) VALUES ($1) ON CONFLICT DO NOTHING RETURNING name",
                (claim,),
            ),
            ("gate", "SELECT 1 FROM claimed", ()),
            ("noted", "INSERT INTO notes (name, note) SELECT $1, $2 FROM gate", (claim, "hello")),
        ]
    )


@pytest.fixture
async def store(make_schema: SchemaFactory) -> tuple[EventStore, asyncpg.Pool]:
    _, pool = await make_schema()
    await pool.execute("CREATE TABLE names (name text PRIMARY KEY)")
    await pool.execute("CREATE TABLE notes (name text, note text)")
    return EventStore(pool), pool


@pytest.fixture
def context() -> Context:
    return tally_context(f"along{uuid.uuid4().hex[:10]}")


async def test_the_append_and_its_along_writes_go_together(
    store: tuple[EventStore, asyncpg.Pool], context: Context
) -> None:
    events, pool = store
    tally = tally_aggregate(context)
    planned = events.plan(tally, "s1", Loaded(TallyState(), 0), Add(amount=2))
    async with events.transaction() as conn:
        assert await events.append_planned(conn, tally, planned, _along("ana"))

    assert [e.event_id for e in await events.load("s1")] == [planned.outcome.events[0].event_id]
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE key = 's1'") == 1
    assert await pool.fetchval("SELECT note FROM notes WHERE name = 'ana'") == "hello"


async def test_a_closed_gate_writes_nothing_of_the_append(
    store: tuple[EventStore, asyncpg.Pool], context: Context
) -> None:
    events, pool = store
    tally = tally_aggregate(context)
    await pool.execute("INSERT INTO names VALUES ('ana')")  # the claim is taken
    planned = events.plan(tally, "s2", Loaded(TallyState(), 0), Add(amount=2))
    async with events.transaction() as conn:
        assert not await events.append_planned(conn, tally, planned, _along("ana"))

    assert await events.load("s2") == []
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    assert await pool.fetchval("SELECT count(*) FROM notes") == 0


async def test_an_existing_stream_is_a_conflict_and_nothing_is_written(
    store: tuple[EventStore, asyncpg.Pool], context: Context
) -> None:
    events, pool = store
    tally = tally_aggregate(context)
    await events.append(
        "s3", "Tally", 0, [tally.decide(TallyState(), Add(amount=1))[0]], context=context
    )
    planned = events.plan(tally, "s3", Loaded(TallyState(), 0), Add(amount=2))
    with pytest.raises(ConcurrencyConflict):
        async with events.transaction() as conn:
            await events.append_planned(conn, tally, planned, _along("bo"))

    assert [e.version for e in await events.load("s3")] == [1]
    assert await pool.fetchval("SELECT count(*) FROM names") == 0
    assert await pool.fetchval("SELECT count(*) FROM notes") == 0
