"""Reactions with a BatchApplier: one flush per partition batch, each event applied once,
and a batch that cannot be applied at once falls back to one message at a time."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from immunreg.contracts.envelope import Context, Envelope, encode_envelope
from immunreg.contracts.topics import dlq_topic
from immunreg.eventstore.database import Connection
from immunreg.messaging import EventConsumer, Reactions
from immunreg.messaging import consumer as consumer_module
from tally import Counted, Poisoned, tally_context

from ..conftest import SchemaFactory, unique_name
from ..support.consumer_process import APPLICATIONS_DDL
from ..support.kafka import KafkaTools
from .test_consumer import background, wait_until


class Recorder:
    """A BatchApplier that writes what its handlers recorded with one statement per flush."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, ...]] | None = None
        self.flushes: list[int] = []

    def begin(self) -> None:
        self.pending = []

    def discard(self) -> None:
        self.pending = None

    def record(self, envelope: Envelope) -> None:
        assert self.pending is not None, "recorded outside a batch"
        self.pending.append((envelope.event_id, envelope.stream_id, envelope.version))

    async def flush(self, conn: Connection) -> None:
        rows, self.pending = self.pending or [], None
        self.flushes.append(len(rows))
        await conn.executemany("INSERT INTO applications VALUES ($1, $2, $3)", rows)


def batched_reactions(ctx: Context, recorder: Recorder) -> Reactions:
    reactions = Reactions(batch=recorder)

    @reactions.on(ctx, Counted)
    async def counted(conn: Connection, event: Counted, envelope: Envelope) -> None:
        recorder.record(envelope)

    @reactions.on(ctx, Poisoned)
    async def poisoned(conn: Connection, event: Poisoned, envelope: Envelope) -> None:
        recorder.record(envelope)  # recorded, then refused: the record must not survive
        raise RuntimeError(event.reason)

    return reactions


async def send(bootstrap: str, ctx: Context, envelopes: list[Envelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send(ctx.topic, encode_envelope(envelope), key=b"one-partition")
        await producer.flush()
    finally:
        await producer.stop()


async def counted_stream(
    make_schema: SchemaFactory, kafka: KafkaTools, events: int
) -> tuple[asyncpg.Pool, Context, list[Envelope]]:
    """A fresh schema with the applications table, a one-partition topic of its own, and
    `events` Counted events of one stream (versions 1 to `events`), not sent yet."""
    _, pool = await make_schema()
    await pool.execute(APPLICATIONS_DDL)
    ctx = tally_context(unique_name())
    await kafka.create(ctx.topic, partitions=1)
    envelopes = [
        ctx.envelope(Counted(amount=1, seq=n), stream_id="s", stream_type="Tally", version=n)
        for n in range(1, events + 1)
    ]
    return pool, ctx, envelopes


async def test_a_batch_is_flushed_once_and_duplicates_in_it_are_applied_once(
    make_schema: SchemaFactory, bootstrap: str, kafka: KafkaTools
) -> None:
    pool, ctx, envelopes = await counted_stream(make_schema, kafka, 200)
    # The same event twice in a row (one batch), and once more at the end.
    await send(bootstrap, ctx, [envelopes[0], *envelopes, envelopes[5]])
    recorder = Recorder()
    consumer = EventConsumer(pool, bootstrap, "g", batched_reactions(ctx, recorder))
    async with background(consumer.run()):
        await wait_until(
            pool, "SELECT next_offset FROM consumer_positions WHERE group_id = 'g'", 202
        )
    assert await pool.fetchval("SELECT count(*) FROM applications") == 200
    assert await pool.fetchval("SELECT count(DISTINCT event_id) FROM applications") == 200
    assert len(recorder.flushes) < 20 and sum(recorder.flushes) == 200
    assert await pool.fetchval("SELECT count(*) FROM processed_events WHERE group_id = 'g'") == 200


async def test_a_failing_batch_is_applied_message_by_message_and_the_bad_one_dead_lettered(
    make_schema: SchemaFactory, bootstrap: str, kafka: KafkaTools
) -> None:
    _, pool = await make_schema()
    await pool.execute(APPLICATIONS_DDL)
    ctx = tally_context(unique_name())
    await kafka.create(ctx.topic, dlq_topic(ctx.topic), partitions=1)
    envelopes = [
        ctx.envelope(Counted(amount=1), stream_id="s", stream_type="Tally", version=1),
        ctx.envelope(Poisoned(reason="poison"), stream_id="s", stream_type="Tally", version=2),
        ctx.envelope(Counted(amount=2), stream_id="s", stream_type="Tally", version=3),
    ]
    await send(bootstrap, ctx, envelopes)
    recorder = Recorder()
    consumer = EventConsumer(
        pool, bootstrap, "g", batched_reactions(ctx, recorder), max_attempts=2, backoff=0.01
    )
    async with background(consumer.run()):
        await wait_until(pool, "SELECT count(*) FROM applications", 2)
        await wait_until(pool, "SELECT next_offset FROM consumer_positions WHERE group_id = 'g'", 3)
    versions = await pool.fetchval("SELECT array_agg(version ORDER BY version) FROM applications")
    assert versions == [1, 3]
    dead: list[asyncpg.Record] = await pool.fetch("SELECT topic, headers FROM outbox")
    assert [r["topic"] for r in dead] == [dlq_topic(ctx.topic)]
    assert ["dlq-reason", "RuntimeError: poison"] in json.loads(dead[0]["headers"])


@pytest.mark.parametrize("copy_claims_from", [1, 1_000_000], ids=["copied", "inserted"])
async def test_events_republished_at_other_offsets_are_skipped_and_the_batch_stays_whole(
    make_schema: SchemaFactory,
    bootstrap: str,
    kafka: KafkaTools,
    monkeypatch: pytest.MonkeyPatch,
    copy_claims_from: int,
) -> None:
    # Whichever way the ids go into processed_events (COPY under a savepoint, or INSERT
    # ... ON CONFLICT), ids processed before are found and skipped without undoing the
    # batch: it is still flushed in a few pieces, not replayed message by message.
    monkeypatch.setattr(consumer_module, "COPY_CLAIMS_FROM", copy_claims_from)
    pool, ctx, envelopes = await counted_stream(make_schema, kafka, 300)
    await send(bootstrap, ctx, envelopes[:150])
    recorder = Recorder()
    consumer = EventConsumer(pool, bootstrap, "g", batched_reactions(ctx, recorder))
    async with background(consumer.run()):
        await wait_until(
            pool, "SELECT next_offset FROM consumer_positions WHERE group_id = 'g'", 150
        )
        first_round = len(recorder.flushes)
        # Republished: 100 of those events again, at new offsets, among 150 new ones.
        await send(bootstrap, ctx, [*envelopes[50:150], *envelopes[150:]])
        await wait_until(
            pool, "SELECT next_offset FROM consumer_positions WHERE group_id = 'g'", 400
        )
    second_round = recorder.flushes[first_round:]
    assert sum(second_round) == 150 and len(second_round) < 20, second_round
    assert await pool.fetchval("SELECT count(*) FROM applications") == 300
    assert await pool.fetchval("SELECT count(DISTINCT event_id) FROM applications") == 300
    assert await pool.fetchval("SELECT count(*) FROM processed_events WHERE group_id = 'g'") == 300
