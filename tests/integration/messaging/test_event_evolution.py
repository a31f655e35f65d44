"""Event evolution through the real path: event store -> relay -> Kafka -> consumer loop.

Two releases of one tally event share a topic: v1 has `amount`; v2 renames it to
`quantity` (keeping `amount` filled, the rename rule) and adds `unit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from immunreg.contracts.envelope import Context, Envelope, Event
from immunreg.contracts.upcasting import Upcasters
from immunreg.domain import Aggregate
from immunreg.eventstore import EventStore, OutboxSignal
from immunreg.eventstore.database import Connection
from immunreg.eventstore.relay import OutboxRelay
from immunreg.messaging import EventConsumer, Reactions

from ..conftest import SchemaFactory, unique_name
from ..support.kafka import KafkaTools
from .test_consumer import background, wait_until


# msgspec tags nested classes by qualified name: each names the tag its release used.
class V1:
    class Counted(Event, frozen=True, tag="Counted"):
        amount: int


class V2:
    class Counted(Event, frozen=True, tag="Counted"):
        schema_version: ClassVar[int] = 2
        quantity: int
        amount: int  # kept and filled until every consumer reads quantity
        unit: str = "dose"


def amount_renamed(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "quantity": data["amount"]}


def contexts(name: str) -> tuple[Context, Context]:
    upcasters = Upcasters()
    upcasters.add("Counted", 1, amount_renamed)
    return Context(name, [V1.Counted]), Context(name, [V2.Counted], upcasters)


SEEN_DDL = """
CREATE TABLE seen (
    group_id text NOT NULL, event_id uuid NOT NULL, written_at int NOT NULL, quantity int NOT NULL
)
"""


async def record(conn: Connection, group: str, envelope: Envelope, quantity: int) -> None:
    await conn.execute(
        "INSERT INTO seen VALUES ($1, $2, $3, $4)",
        group,
        envelope.event_id,
        envelope.schema_version,
        quantity,
    )


async def test_a_v1_message_reaches_a_v2_handler_upcast_and_a_v2_message_a_v1_handler(
    make_schema: SchemaFactory, dsn: str, bootstrap: str, kafka: KafkaTools
) -> None:
    schema, pool = await make_schema()
    await pool.execute(SEEN_DDL)
    name = unique_name()
    ctx_v1, ctx_v2 = contexts(name)
    await kafka.create(ctx_v1.topic, partitions=1)
    store = EventStore(pool)
    # Published by the old release, then by the new one, on the same topic.
    await store.append("s", "Tally", 0, [V1.Counted(amount=3)], context=ctx_v1)
    await store.append("s", "Tally", 1, [V2.Counted(quantity=5, amount=5)], context=ctx_v2)

    new_reactions, old_reactions = Reactions(), Reactions()

    @new_reactions.on(ctx_v2, V2.Counted)
    async def new_handler(conn: Connection, event: V2.Counted, envelope: Envelope) -> None:
        assert event.unit == "dose"
        await record(conn, "v2", envelope, event.quantity)

    @old_reactions.on(ctx_v1, V1.Counted)
    async def old_handler(conn: Connection, event: V1.Counted, envelope: Envelope) -> None:
        await record(conn, "v1", envelope, event.amount)

    relay_signal = OutboxSignal(schema)
    relay = OutboxRelay(dsn, schema, bootstrap, signal=relay_signal, poll_interval=0.1)
    new_consumer = EventConsumer(pool, bootstrap, f"new-{name}", new_reactions)
    old_consumer = EventConsumer(pool, bootstrap, f"old-{name}", old_reactions)
    async with background(relay.run(), new_consumer.run(), old_consumer.run()):
        await wait_until(pool, "SELECT count(*) FROM seen", 4)
        # The relay deletes what it published after Kafka's commit, so consumers can
        # be done first: wait for the delete, not assume it.
        await wait_until(pool, "SELECT count(*) FROM outbox", 0)

    rows = await pool.fetch("SELECT group_id, written_at, quantity FROM seen ORDER BY 1, 2")
    assert [tuple(r) for r in rows] == [("v1", 1, 3), ("v1", 2, 5), ("v2", 1, 3), ("v2", 2, 5)]
    assert await pool.fetchval("SELECT count(*) FROM consumer_positions") == 2
    # Nothing was dead-lettered: no dlq row ever reached the (now empty) outbox.
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


def total(context: Context) -> Aggregate[int, None]:
    def evolve(state: int, event: V2.Counted) -> int:
        return state + event.quantity

    def decide(state: int, command: None) -> Sequence[Event]:
        return []

    return Aggregate(
        stream_type="Tally", context=context, initial=int, evolve=evolve, decide=decide
    )


async def test_the_event_store_loads_a_stream_written_at_v1_with_the_v2_code(
    make_schema: SchemaFactory,
) -> None:
    _, pool = await make_schema()
    ctx_v1, ctx_v2 = contexts(unique_name())
    store = EventStore(pool)
    old = [V1.Counted(amount=2), V1.Counted(amount=4)]
    await store.append("s", "Tally", 0, old, context=ctx_v1)
    await store.append("s", "Tally", 2, [V2.Counted(quantity=7, amount=7)], context=ctx_v2)

    loaded = await store.load_state(total(ctx_v2), "s")

    assert (loaded.state, loaded.version) == (13, 3)
    versions = await pool.fetch("SELECT schema_version FROM events ORDER BY version")
    # Stored events keep the version they were written at; loading upcasts.
    assert [r[0] for r in versions] == [1, 1, 2]
