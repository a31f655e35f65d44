"""The outbox relay against the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest
from aiokafka.structs import ConsumerRecord

from immunreg.contracts.envelope import Context, decode_envelope, encode_envelope
from immunreg.eventstore import EventStore, OutboxSignal
from immunreg.eventstore.relay import OutboxRelay
from immunreg.paths import REPO_ROOT
from tally import Counted, tally_context

from ..conftest import SchemaFactory, unique_name
from ..support.kafka import KafkaTools


def assert_exactly_once_in_stream_order(
    records: Sequence[ConsumerRecord], expected: dict[str, int]
) -> None:
    """Every (stream, version) exactly once, and each stream's versions in order."""
    seen: dict[str, list[int]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        envelope = decode_envelope(record.value)
        assert record.key.decode() == envelope.stream_id
        seen[envelope.stream_id].append(envelope.version)
        partitions[envelope.stream_id].add(record.partition)
    assert {s: len(v) for s, v in seen.items()} == expected, "lost or duplicated events"
    for stream, versions in seen.items():
        assert versions == list(range(1, expected[stream] + 1)), f"{stream} out of order"
        assert len(partitions[stream]) == 1, f"{stream} spread over partitions"


async def write_streams(
    store: EventStore, ctx: Context, writers: int, events_each: int, pace: float = 0.0
) -> dict[str, int]:
    """`writers` concurrent writers, each appending `events_each` events in small batches."""

    async def writer(n: int) -> None:
        version = 0
        rng = random.Random(n)
        while version < events_each:
            size = min(rng.randint(1, 5), events_each - version)
            events = [Counted(amount=1, seq=version + i) for i in range(size)]
            await store.append(f"stream-{n}", "Tally", version, events, context=ctx)
            version += size
            if pace:
                await asyncio.sleep(pace * rng.random())

    await asyncio.gather(*(writer(n) for n in range(writers)))
    return {f"stream-{n}": events_each for n in range(writers)}


@contextlib.asynccontextmanager
async def running_relay(relay: OutboxRelay) -> AsyncIterator[None]:
    task = asyncio.create_task(relay.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for_empty_outbox(pool: asyncpg.Pool, seconds: float = 60) -> None:
    for _ in range(int(seconds * 10)):
        if await pool.fetchval("SELECT count(*) FROM outbox") == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("outbox did not drain")


async def test_fifty_writers_reach_kafka_exactly_once_in_stream_order(
    make_schema: SchemaFactory, dsn: str, bootstrap: str, kafka: KafkaTools
) -> None:
    schema, pool = await make_schema()
    ctx = tally_context(unique_name())
    await kafka.create(ctx.topic)
    relay_signal = OutboxSignal(schema)
    store = EventStore(pool, signal=relay_signal)
    relay = OutboxRelay(dsn, schema, bootstrap, signal=relay_signal, poll_interval=0.1)

    async with running_relay(relay):
        expected = await write_streams(store, ctx, writers=50, events_each=200)
        await wait_for_empty_outbox(pool)

    records = await kafka.read_all(ctx.topic, expect=50 * 200)
    assert_exactly_once_in_stream_order(records, expected)


async def test_a_late_committing_transaction_is_not_skipped(
    make_schema: SchemaFactory, dsn: str, bootstrap: str, kafka: KafkaTools
) -> None:
    schema, pool = await make_schema()
    ctx = tally_context(unique_name())
    await kafka.create(ctx.topic)
    relay_signal = OutboxSignal(schema)
    store = EventStore(pool, signal=relay_signal)
    relay = OutboxRelay(dsn, schema, bootstrap, signal=relay_signal, poll_interval=0.05)

    async with running_relay(relay):
        await relay.leading.wait()
        async with pool.acquire() as slow:
            transaction = slow.transaction()
            await transaction.start()
            # The slow transaction takes its outbox id first ...
            await store.append("slow", "Tally", 0, [Counted(amount=1)], context=ctx, conn=slow)
            # ... then later ones commit and could be published before it.
            for i in range(20):
                await store.append(f"fast-{i}", "Tally", 0, [Counted(amount=1)], context=ctx)
            await asyncio.sleep(0.5)
            await transaction.commit()
        if store.signal:
            store.signal.wake()
        await wait_for_empty_outbox(pool)

    records = await kafka.read_all(ctx.topic, expect=21)
    expected = {"slow": 1, **{f"fast-{i}": 1 for i in range(20)}}
    assert_exactly_once_in_stream_order(records, expected)


def start_relay_process(
    dsn: str, schema: str, bootstrap: str, batch: int, *die: str
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.support.relay_process",
            dsn,
            schema,
            bootstrap,
            str(batch),
            *die,
        ],
        cwd=REPO_ROOT,
        env=env,
    )


async def drain_with_a_fresh_relay(
    dsn: str, schema: str, bootstrap: str, batch: int, pool: asyncpg.Pool
) -> None:
    """Start a relay process that is not told to die, and let it empty the outbox."""
    survivor = start_relay_process(dsn, schema, bootstrap, batch)
    try:
        await wait_for_empty_outbox(pool)
    finally:
        survivor.kill()
        await asyncio.to_thread(survivor.wait)


@pytest.mark.parametrize("packed", [False, True], ids=["rows", "with-packed-rows"])
@pytest.mark.parametrize(
    "die",
    [["--die-after-sends", "230"], ["--die-after-commits", "2"]],
    ids=["killed-mid-batch", "killed-between-kafka-commit-and-outbox-delete"],
)
async def test_relay_killed_at_a_chosen_point_loses_and_duplicates_nothing(
    make_schema: SchemaFactory,
    dsn: str,
    bootstrap: str,
    kafka: KafkaTools,
    *,
    die: list[str],
    packed: bool,
) -> None:
    # With packed rows first: 2,500 streams started together, three packed rows (1,000,
    # 1,000 and 500 messages), each larger than the relay's batch of 100, so a batch is
    # one packed row: killed in the first row's Kafka transaction, or after the second
    # row's commit and before its delete (recovery must find it published).
    schema, pool = await make_schema()
    ctx = tally_context(unique_name())
    await kafka.create(ctx.topic)
    store = EventStore(pool)
    expected = await start_streams_packed(store, ctx, 2500) if packed else {}
    expected |= await write_streams(store, ctx, writers=10, events_each=50)
    rows = await pool.fetch("SELECT packed FROM outbox WHERE packed IS NOT NULL ORDER BY id")
    assert [row["packed"] for row in rows] == ([1000, 1000, 500] if packed else [])
    written = await pool.fetchval("SELECT count(*) FROM outbox")

    doomed = start_relay_process(dsn, schema, bootstrap, 100, *die)
    assert await asyncio.to_thread(doomed.wait, 60) == -signal.SIGKILL
    left = await pool.fetchval("SELECT count(*) FROM outbox")
    assert 0 < left <= written, "the kill should leave part of the outbox unpublished"
    assert packed or left < written, "the kill should come after a batch was published"

    await drain_with_a_fresh_relay(dsn, schema, bootstrap, 100, pool)

    records = await kafka.read_all(ctx.topic, expect=sum(expected.values()))
    assert_exactly_once_in_stream_order(records, expected)


async def test_relay_killed_repeatedly_while_writers_run(
    make_schema: SchemaFactory, dsn: str, bootstrap: str, kafka: KafkaTools
) -> None:
    schema, pool = await make_schema()
    ctx = tally_context(unique_name())
    await kafka.create(ctx.topic)
    store = EventStore(pool)
    writing = asyncio.create_task(write_streams(store, ctx, 20, 100, pace=0.6))
    rng = random.Random(7)
    kills = 0
    for _ in range(4):
        process = start_relay_process(dsn, schema, bootstrap, 20)
        await asyncio.sleep(rng.uniform(1.0, 2.5))
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait)
        kills += 1
    expected = await writing
    await drain_with_a_fresh_relay(dsn, schema, bootstrap, 20, pool)

    assert kills == 4
    records = await kafka.read_all(ctx.topic, expect=20 * 100)
    assert_exactly_once_in_stream_order(records, expected)


async def start_streams_packed(store: EventStore, ctx: Context, streams: int) -> dict[str, int]:
    """`streams` new streams in one write (packed outbox rows), then a second event on
    every tenth of them appended alone (a row of its own, after the packed ones)."""
    envelopes = [
        ctx.envelope(Counted(amount=1), stream_id=f"bulk-{n}", stream_type="Tally", version=1)
        for n in range(streams)
    ]
    await store.postgres.insert_streams(
        envelopes, (ctx.topic, [encode_envelope(e) for e in envelopes])
    )
    for n in range(0, streams, 10):
        await store.append(f"bulk-{n}", "Tally", 1, [Counted(amount=1)], context=ctx)
    return {f"bulk-{n}": 2 if n % 10 == 0 else 1 for n in range(streams)}
