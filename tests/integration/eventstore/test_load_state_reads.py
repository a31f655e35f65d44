"""`load_state` on PostgreSQL: the snapshot and the events after it in one statement
(one round trip per command's load instead of two), the same state as a full replay."""

from __future__ import annotations

import dataclasses
import uuid

from immunreg.eventstore import EventStore
from tally import Add, tally_aggregate, tally_context

from ..conftest import SchemaFactory


async def _statements_of_load(store: EventStore, aggregate: object, stream_id: str) -> list[str]:
    """The statements one `load_state` sends, in order."""
    sent: list[str] = []
    async with store.pool.acquire() as conn:
        conn.add_query_logger(lambda record: sent.append(record.query))
        await store.load_state(aggregate, stream_id, conn)  # type: ignore[arg-type]
    return sent


async def test_a_load_with_a_snapshot_is_one_statement(make_schema: SchemaFactory) -> None:
    _, pool = await make_schema()
    store = EventStore(pool)
    tally = tally_aggregate(tally_context(f"loads{uuid.uuid4().hex[:10]}"), snapshot_every=10)
    for amount in range(1, 26):
        await store.execute(tally, "s", Add(amount=amount))

    async with pool.acquire() as conn:
        loaded = await store.load_state(tally, "s", conn)
    replayed = await store.load_state(dataclasses.replace(tally, state_type=None), "s")
    assert loaded == replayed and loaded.version == 25
    assert len(await _statements_of_load(store, tally, "s")) == 1
    # A stream with no snapshot yet, and one with no events at all.
    await store.execute(tally, "t", Add(amount=4))
    async with pool.acquire() as conn:
        assert (await store.load_state(tally, "t", conn)).state.total == 4
        assert (await store.load_state(tally, "none", conn)).version == 0
    assert len(await _statements_of_load(store, tally, "t")) == 1
