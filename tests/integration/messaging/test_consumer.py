"""The consumer loop against the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from immunreg.contracts.envelope import Context, Envelope
from immunreg.contracts.topics import dlq_topic
from immunreg.eventstore import EventStore, OutboxSignal
from immunreg.eventstore.database import Connection
from immunreg.eventstore.relay import OutboxRelay
from immunreg.messaging import EventConsumer
from immunreg.observability.metrics import Metrics
from immunreg.paths import REPO_ROOT
from tally import Counted, Poisoned, tally_context

from ..conftest import SchemaFactory, unique_name
from ..eventstore.test_relay import wait_for_empty_outbox, write_streams
from ..support.consumer_process import APPLICATIONS_DDL, counting_reactions
from ..support.kafka import KafkaTools


@contextlib.asynccontextmanager
async def background(*coroutines: Coroutine[Any, Any, object]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def publish_history(
    pool: asyncpg.Pool,
    schema: str,
    dsn: str,
    bootstrap: str,
    ctx: Context,
    *,
    streams: int,
    each: int,
) -> None:
    """Events through the real path: event store -> outbox -> relay -> Kafka."""
    relay_signal = OutboxSignal(schema)
    store = EventStore(pool, signal=relay_signal)
    relay = OutboxRelay(dsn, schema, bootstrap, signal=relay_signal, poll_interval=0.1)
    async with background(relay.run()):
        await write_streams(store, ctx, streams, each)
        await wait_for_empty_outbox(pool)


async def wait_until(pool: asyncpg.Pool, query: str, value: int, seconds: float = 60) -> None:
    got = None
    for _ in range(int(seconds * 10)):
        got = await pool.fetchval(query)
        if got == value:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{query} stayed at {got}, expected {value}")


def start_consumer(
    dsn: str, schema: str, bootstrap: str, context: str, group: str, *extra: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.support.consumer_process",
            dsn,
            schema,
            bootstrap,
            context,
            group,
            *extra,
        ],
        cwd=REPO_ROOT,
        # tests/ too: the process imports the suite's tally context as `tally`, like the tests.
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")]),
        },
    )


async def test_consumer_killed_mid_transaction_applies_each_event_exactly_once(
    make_schema: SchemaFactory, dsn: str, bootstrap: str, kafka: KafkaTools
) -> None:
    schema, pool = await make_schema()
    await pool.execute(APPLICATIONS_DDL)
    name = unique_name()
    ctx = tally_context(name)
    await kafka.create(ctx.topic)
    await publish_history(pool, schema, dsn, bootstrap, ctx, streams=20, each=100)
    group = f"group-{name}"

    doomed = start_consumer(dsn, schema, bootstrap, name, group, "--die-after-applies", "700")
    assert await asyncio.to_thread(doomed.wait, 90) == -signal.SIGKILL
    after_kill = await pool.fetchval("SELECT count(*) FROM applications")
    assert 0 < after_kill < 2000, "the kill should land part-way through"

    survivor = start_consumer(dsn, schema, bootstrap, name, group)
    try:
        await wait_until(pool, "SELECT count(*) FROM applications", 2000)
        await asyncio.sleep(2)  # a double application would arrive in this window
    finally:
        survivor.kill()
        await asyncio.to_thread(survivor.wait)

    assert await pool.fetchval("SELECT count(*) FROM applications") == 2000
    assert await pool.fetchval("SELECT count(DISTINCT event_id) FROM applications") == 2000
    # Offsets also count the relay's transaction markers, so compare with the
    # last message actually read from each partition.
    records = await kafka.read_all(ctx.topic, expect=2000)
    last: dict[int, int] = {}
    for record in records:
        last[record.partition] = max(last.get(record.partition, -1), record.offset)
    stored = await pool.fetch(
        "SELECT partition, next_offset FROM consumer_positions WHERE group_id = $1", group
    )
    assert {r["partition"]: r["next_offset"] for r in stored} == {
        p: offset + 1 for p, offset in last.items()
    }


async def test_a_poison_message_goes_to_the_dlq_and_the_partition_moves_on(
    make_schema: SchemaFactory, dsn: str, bootstrap: str, kafka: KafkaTools
) -> None:
    schema, pool = await make_schema()
    await pool.execute(APPLICATIONS_DDL)
    name = unique_name()
    ctx = tally_context(name)
    await kafka.create(ctx.topic, dlq_topic(ctx.topic), partitions=1)

    store = EventStore(pool)
    await store.append("s", "Tally", 0, [Counted(amount=1)], context=ctx)
    await store.append("s", "Tally", 1, [Poisoned(reason="handler raises")], context=ctx)
    await store.append("s", "Tally", 2, [Counted(amount=2)], context=ctx)
    relay_signal = OutboxSignal(schema)
    relay = OutboxRelay(dsn, schema, bootstrap, signal=relay_signal, poll_interval=0.1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        # Not even an envelope: garbage bytes between the events.
        await producer.send_and_wait(ctx.topic, b"\xff not json", key=b"s")
    finally:
        await producer.stop()
    await store.append("s", "Tally", 3, [Counted(amount=3)], context=ctx)

    reactions = counting_reactions(ctx)
    attempts = 0

    @reactions.on(ctx, Poisoned)
    async def poisoned(conn: Connection, event: Poisoned, envelope: Envelope) -> None:
        nonlocal attempts
        attempts += 1
        # The failed attempt's writes must be rolled back with its savepoint.
        await conn.execute("INSERT INTO applications VALUES ($1, 'poison', 0)", envelope.event_id)
        raise RuntimeError(event.reason)

    consumer = EventConsumer(
        pool,
        bootstrap,
        f"group-{name}",
        reactions,
        signal=relay_signal,
        max_attempts=3,
        backoff=0.01,
    )
    async with background(relay.run(), consumer.run()):
        await wait_until(pool, "SELECT count(*) FROM applications", 3)
        dead = await kafka.read_all(dlq_topic(ctx.topic), expect=2)

    assert attempts == 3
    assert await pool.fetchval("SELECT count(*) FROM applications WHERE stream_id = 'poison'") == 0
    assert sorted(await pool.fetchval("SELECT array_agg(version) FROM applications")) == [1, 3, 4]
    reasons = sorted(dict(m.headers)["dlq-reason"].decode() for m in dead)
    assert len(dead) == 2
    assert reasons[0] == "RuntimeError: handler raises"
    assert reasons[1].startswith("undecodable envelope")
    assert all(dict(m.headers)["dlq-group"].decode() == f"group-{name}" for m in dead)


async def test_positions_come_from_postgres_not_kafka_committed_offsets(
    make_schema: SchemaFactory, dsn: str, bootstrap: str, kafka: KafkaTools
) -> None:
    """A read model rebuilt in a fresh schema under the same group id starts from the
    first event, although Kafka already holds committed offsets for that group."""
    name = unique_name()
    ctx = tally_context(name)
    await kafka.create(ctx.topic)
    group = f"group-{name}"
    first_schema, first = await make_schema()
    await publish_history(first, first_schema, dsn, bootstrap, ctx, streams=5, each=20)

    for _, pool in (("live", first), ("rebuild", (await make_schema())[1])):
        await pool.execute(APPLICATIONS_DDL)
        consumer = EventConsumer(pool, bootstrap, group, counting_reactions(ctx))
        async with background(consumer.run()):
            await wait_until(pool, "SELECT count(*) FROM applications", 100)
            # has_joined, not joined: a rebalance under load may clear `joined` again. The
            # fetcher may deliver the records while the assignment callback is still
            # seeking (they are then applied once: positions and processed ids), so the
            # callback can finish after the last one is applied: wait for it.
            for _ in range(100):
                if consumer.has_joined:
                    break
                await asyncio.sleep(0.1)
            assert consumer.has_joined


async def test_a_caught_up_consumer_reports_no_lag_despite_transaction_markers(
    make_schema: SchemaFactory, dsn: str, bootstrap: str, kafka: KafkaTools
) -> None:
    schema, pool = await make_schema()
    await pool.execute(APPLICATIONS_DDL)
    name = unique_name()
    ctx = tally_context(name)
    await kafka.create(ctx.topic)
    await publish_history(pool, schema, dsn, bootstrap, ctx, streams=6, each=10)
    metrics = Metrics("lag-test")
    consumer = EventConsumer(
        pool, bootstrap, f"group-{name}", counting_reactions(ctx), metrics=metrics
    )
    async with background(consumer.run()):
        await wait_until(pool, "SELECT count(*) FROM applications", 60)
        lags: list[float] = []
        for _ in range(30):
            await asyncio.sleep(0.2)
            lags = [
                sample.value
                for family in metrics.registry.collect()
                if family.name == "immunreg_consumer_lag_messages"
                for sample in family.samples
                if sample.labels["topic"] == ctx.topic
            ]
            if len(lags) == 3 and not any(lags):
                break
    assert len(lags) == 3, "one gauge per partition"
    assert lags == [0, 0, 0]
