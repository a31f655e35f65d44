"""Reactions that write through the consumer's connection: a batch is tried in one go
(no savepoint per message) and, when a message in it fails, rolled back and applied
message by message; a batch with nothing for the group only moves its position."""

from __future__ import annotations

import json
from collections.abc import Sequence

from immunreg.contracts.envelope import Context, Envelope, Event
from immunreg.contracts.topics import dlq_topic
from immunreg.eventstore.database import Connection
from immunreg.messaging import EventConsumer, Reactions
from tally import Counted, Poisoned, tally_context

from ..conftest import SchemaFactory, unique_name
from ..support.consumer_process import APPLICATIONS_DDL, counting_reactions, record_application
from ..support.kafka import KafkaTools
from .test_consumer import background, wait_until
from .test_consumer_batches import send

POSITION = "SELECT next_offset FROM consumer_positions WHERE group_id = 'g'"


async def send_in_order(bootstrap: str, ctx: Context, events: Sequence[Event]) -> None:
    """The events as one stream's versions 1, 2, ..., to one partition (a batch or few)."""
    envelopes = [
        ctx.envelope(event, stream_id="s", stream_type="Tally", version=n)
        for n, event in enumerate(events, start=1)
    ]
    await send(bootstrap, ctx, envelopes)


async def test_a_message_failing_in_a_batch_leaves_the_others_applied_once(
    make_schema: SchemaFactory, bootstrap: str, kafka: KafkaTools
) -> None:
    _, pool = await make_schema()
    await pool.execute(APPLICATIONS_DDL)
    ctx = tally_context(unique_name())
    await kafka.create(ctx.topic, dlq_topic(ctx.topic), partitions=1)
    events: list[Counted | Poisoned] = [Counted(amount=n) for n in range(1, 6)]
    events += [Poisoned(reason="poison"), *(Counted(amount=n) for n in range(7, 11))]
    await send_in_order(bootstrap, ctx, events)
    reactions = counting_reactions(ctx)
    attempts = 0

    @reactions.on(ctx, Poisoned)
    async def poisoned(conn: Connection, event: Poisoned, envelope: Envelope) -> None:
        nonlocal attempts
        attempts += 1
        await record_application(conn, envelope)  # written, then refused with the message
        raise RuntimeError(event.reason)

    consumer = EventConsumer(pool, bootstrap, "g", reactions, max_attempts=3, backoff=0.01)
    async with background(consumer.run()):
        await wait_until(pool, POSITION, 10)
    versions = await pool.fetchval("SELECT array_agg(version ORDER BY version) FROM applications")
    assert versions == [1, 2, 3, 4, 5, 7, 8, 9, 10]
    assert attempts == 3  # the try together counts as the first
    dead = await pool.fetch("SELECT headers FROM outbox")
    assert len(dead) == 1
    assert ["dlq-reason", "RuntimeError: poison"] in json.loads(dead[0]["headers"])


async def test_a_batch_with_nothing_for_the_group_moves_its_position_only(
    make_schema: SchemaFactory, bootstrap: str, kafka: KafkaTools
) -> None:
    _, pool = await make_schema()
    await pool.execute(APPLICATIONS_DDL)
    ctx = tally_context(unique_name())
    await kafka.create(ctx.topic, partitions=1)
    await send_in_order(bootstrap, ctx, [Counted(amount=n) for n in range(1, 21)])
    reactions = Reactions()

    @reactions.on(ctx, Poisoned)
    async def poisoned(conn: Connection, event: Poisoned, envelope: Envelope) -> None:
        await record_application(conn, envelope)

    consumer = EventConsumer(pool, bootstrap, "g", reactions)
    async with background(consumer.run()):
        await wait_until(pool, POSITION, 20)
    assert await pool.fetchval("SELECT count(*) FROM applications") == 0
    assert await pool.fetchval("SELECT count(*) FROM processed_events") == 0
