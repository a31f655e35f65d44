"""The foundation benchmark: the event store and its outbox relay against their baselines.

Run with `.venv/bin/python -m bench.foundation [--quick]` (or `make bench`). Phases:

- pgbench_raw_insert: the real pgbench inserting into a table shaped like `events`,
  one row per transaction and two (event + outbox row), the most PostgreSQL does
  here with no Python in the way.
- eventstore_append: concurrent writers, each on its own stream, through
  `EventStore.append` (1 event per append, and 10).
- relay: a pre-filled outbox drained to a fresh 3-partition topic by
  `OutboxRelay`, then the topic read back (read_committed) and counted.
- kafka_producer_baseline: the relay's payloads sent by a bare aiokafka producer
  with the relay's settings, plain idempotent and transactional (500 a transaction).

`--relay-cpu` runs only the relay, on an outbox with a key per row (as a scheduling
run's), and reports the CPU per event of the relay's process, PostgreSQL and Kafka
(under "foundation_relay_cpu").

Figures go to bench/results.json under "foundation"; a summary is printed.
Every phase uses throwaway schemas (dropped) and unique `bench-` topics.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import percentile, progress
from bench.results import record
from immunreg.config import Settings
from immunreg.contracts.envelope import Context, Envelope, Event, encode_envelope
from immunreg.eventstore.database import apply_schema, create_pool
from immunreg.eventstore.relay import (
    POSITION_HEADER,
    RELAY_HEADER,
    OutboxRelay,
    encode_position,
)
from immunreg.eventstore.signal import OutboxSignal
from immunreg.eventstore.store import EventStore
from immunreg.messaging.partitions import partition_for
from immunreg.messaging.topics import ensure_topics

SECTION = "foundation"
STREAM_TYPE = "BenchStream"
DATA_BYTES = 300  # the event's own JSON, about the size of a recorded immunization
RELAY_MAX_BATCH_BYTES = 256 * 1024  # the max_batch_size OutboxRelay gives its producer
PARTITIONS = 3
PGBENCH_CLIENTS = 8
PGBENCH_THREADS = 2


class BenchRecorded(Event, frozen=True):
    """The benchmark's only event: a sequence number padded to DATA_BYTES of JSON."""

    seq: int
    subject: str
    note: str


def _padding() -> str:
    bare = msgspec.json.encode(BenchRecorded(seq=100_000, subject="subject-000000", note=""))
    return "x" * max(0, DATA_BYTES - len(bare))


NOTE = _padding()


def make_event(seq: int) -> BenchRecorded:
    return BenchRecorded(seq=seq, subject=f"subject-{seq % 1_000_000:06d}", note=NOTE)


def bench_context(kind: str) -> Context:
    """A context with a never-used topic `bench-<kind>-<hex>.events.v1`."""
    return Context(f"bench-{kind}-{uuid.uuid4().hex[:10]}", [BenchRecorded])


def unique_schema(kind: str) -> str:
    return f"bench_{kind}_{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Plan:
    """How long and how big each phase is."""

    mode: str
    pgbench_seconds: int
    append_seconds: float
    relay_events: int
    relay_batch_sizes: tuple[int, ...]
    budget_seconds: float  # later relay batch sizes are skipped once past this
    prefill_events_per_append: int = 100
    prefill_writers: int = 8
    append_writers: tuple[int, ...] = (8, 32)
    batched_events_per_append: int = 10
    batched_writers: int = 8
    producer_chunk: int = 5_000
    transaction_size: int = 500


FULL = Plan("full", 10, 10.0, 100_000, (500, 2000), budget_seconds=120.0)
QUICK = Plan("quick", 5, 5.0, 10_000, (500, 2000), budget_seconds=60.0)


@dataclass(frozen=True)
class Infra:
    dsn: str
    bootstrap: str


async def until_drained(
    pool: asyncpg.Pool, relay: asyncio.Task[None], started: float, seconds: float
) -> None:
    """Wait until the outbox is empty, raising the relay's error if it stopped, or after
    `seconds` from `started`."""
    while await pool.fetchval("SELECT EXISTS (SELECT 1 FROM outbox)"):
        if relay.done():
            relay.result()
        if time.perf_counter() - started > seconds:
            raise RuntimeError(f"the relay did not drain the outbox within {seconds:g} s")
        await asyncio.sleep(0.05)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --- pgbench -------------------------------------------------------------------------------


def find_pgbench() -> str:
    found = shutil.which("pgbench")
    if found:
        return found

    def major(path: str) -> int:
        part = Path(path).parts[-3]
        return int(part) if part.isdigit() else 0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), key=major)
    if not candidates:
        raise RuntimeError("pgbench not found on PATH or under /usr/lib/postgresql/*/bin")
    return candidates[-1]


@dataclass(frozen=True)
class PgTarget:
    host: str
    port: str
    user: str
    password: str | None
    database: str


def pg_target(dsn: str) -> PgTarget:
    url = urlsplit(dsn)
    return PgTarget(
        host=url.hostname or "127.0.0.1",
        port=str(url.port or 5432),
        user=unquote(url.username or "postgres"),
        password=unquote(url.password) if url.password else None,
        database=unquote(url.path.lstrip("/")) or "postgres",
    )


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def pgbench_scripts(schema: str, data: bytes, payload: bytes) -> tuple[str, str]:
    """One-row and two-row (event + outbox row, one statement) insert scripts.

    Keys: stream `c<client_id>`, version from a sequence, so clients never collide.
    """
    event_row = (
        f"INSERT INTO {schema}.events (stream_id, version, event_id, data, recorded_at) "
        f"VALUES ('c' || :client_id::text, nextval('{schema}.versions'), gen_random_uuid(), "
        f"{_sql_literal(data.decode())}::jsonb, now())"
    )
    one = event_row + ";\n"
    two = (
        f"WITH e AS ({event_row} RETURNING stream_id) "
        f"INSERT INTO {schema}.outbox (topic, key, payload) "
        f"SELECT 'bench', e.stream_id, '\\x{payload.hex()}'::bytea FROM e;\n"
    )
    return one, two


def pgbench_ddl(schema: str) -> str:
    return f"""
        CREATE SCHEMA {schema};
        CREATE SEQUENCE {schema}.versions;
        CREATE TABLE {schema}.events (
            stream_id   text        NOT NULL,
            version     integer     NOT NULL,
            event_id    uuid        NOT NULL,
            data        jsonb       NOT NULL,
            recorded_at timestamptz NOT NULL,
            PRIMARY KEY (stream_id, version)
        );
        CREATE TABLE {schema}.outbox (
            id         bigserial   PRIMARY KEY,
            tx_id      xid8        NOT NULL DEFAULT pg_current_xact_id(),
            topic      text        NOT NULL,
            key        text        NOT NULL,
            payload    bytea       NOT NULL,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE INDEX ON {schema}.outbox (tx_id, id);
    """


@contextlib.contextmanager
def script_file(script: str) -> Iterator[str]:
    """The script in a temporary file, removed afterwards."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="bench-") as f:
        f.write(script)
        f.flush()
        yield f.name


async def run_pgbench(
    exe: str, target: PgTarget, script: str, seconds: int, rows_per_tx: int
) -> dict[str, Any]:
    env = dict(os.environ)
    if target.password:
        env["PGPASSWORD"] = target.password
    with script_file(script) as path:
        args = [
            exe, "-h", target.host, "-p", target.port, "-U", target.user,
            "-n", "-M", "prepared",
            "-c", str(PGBENCH_CLIENTS), "-j", str(PGBENCH_THREADS), "-T", str(seconds),
            "-f", path, target.database,
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
        )
        out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    tps = re.search(r"^tps = ([\d.]+)", text, re.MULTILINE)
    if proc.returncode != 0 or tps is None:
        raise RuntimeError(f"pgbench failed (exit {proc.returncode}):\n{text}")
    latency = re.search(r"^latency average = ([\d.]+) ms", text, re.MULTILINE)
    failed = re.search(r"^number of failed transactions: (\d+)", text, re.MULTILINE)
    processed = re.search(r"^number of transactions actually processed: (\d+)", text, re.M)
    rate = float(tps.group(1))
    return {
        "tps": round(rate, 1),
        "rows_per_s": round(rate * rows_per_tx, 1),
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "transactions": int(processed.group(1)) if processed else None,
        "failed_transactions": int(failed.group(1)) if failed else 0,
    }


async def bench_pgbench(infra: Infra, plan: Plan) -> dict[str, Any]:
    exe = find_pgbench()
    schema = unique_schema("pg")
    ctx = bench_context("pgbench")
    envelope = ctx.envelope(make_event(1), stream_id="c1", stream_type=STREAM_TYPE, version=1)
    one, two = pgbench_scripts(schema, bytes(envelope.data), encode_envelope(envelope))
    target = pg_target(infra.dsn)
    conn = await asyncpg.connect(infra.dsn)
    try:
        await conn.execute(pgbench_ddl(schema))
        progress(f"pgbench 1 row/tx, {plan.pgbench_seconds}s")
        one_row = await run_pgbench(exe, target, one, plan.pgbench_seconds, 1)
        progress(f"pgbench 2 rows/tx, {plan.pgbench_seconds}s")
        two_rows = await run_pgbench(exe, target, two, plan.pgbench_seconds, 2)
    finally:
        with contextlib.suppress(Exception):
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
    return {
        "pgbench": exe,
        "clients": PGBENCH_CLIENTS,
        "threads": PGBENCH_THREADS,
        "duration_s": plan.pgbench_seconds,
        "protocol": "prepared",
        "data_bytes": len(bytes(envelope.data)),
        "one_row": one_row,
        "two_rows": two_rows,
    }


# --- event store appends ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_schema(
    dsn: str, kind: str, pool_size: int
) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A new service schema with the event-store DDL applied; dropped afterwards."""
    schema = unique_schema(kind)
    pool = await create_pool(dsn, schema, min_size=pool_size, max_size=pool_size)
    try:
        await apply_schema(pool, schema)
        yield schema, pool
    finally:
        try:
            await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await pool.close()


async def append_run(
    store: EventStore,
    ctx: Context,
    *,
    label: str,
    writers: int,
    per_append: int,
    seconds: float,
) -> dict[str, Any]:
    """`writers` concurrent writers appending to their own streams for `seconds`."""
    latencies: list[float] = []
    appends = [0] * writers
    deadline = time.perf_counter() + seconds

    async def writer(n: int) -> None:
        stream = f"{label}-{n}"
        version = 0
        while time.perf_counter() < deadline:
            events = [make_event(version + i) for i in range(1, per_append + 1)]
            started = time.perf_counter()
            await store.append(stream, STREAM_TYPE, version, events, context=ctx)
            latencies.append(time.perf_counter() - started)
            version += per_append
            appends[n] += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer(n) for n in range(writers)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    total = sum(appends)
    return {
        "writers": writers,
        "events_per_append": per_append,
        "duration_s": round(elapsed, 2),
        "appends": total,
        "appends_per_s": round(total / elapsed, 1),
        "events_per_s": round(total * per_append / elapsed, 1),
        "p50_ms": _ms(percentile(latencies, 50)),
        "p95_ms": _ms(percentile(latencies, 95)),
        "p99_ms": _ms(percentile(latencies, 99)),
        "max_ms": _ms(latencies[-1]) if latencies else None,
    }


async def bench_append(infra: Infra, plan: Plan) -> dict[str, Any]:
    ctx = bench_context("append")
    figures: dict[str, Any] = {}
    pool_size = max(*plan.append_writers, plan.batched_writers)
    async with fresh_schema(infra.dsn, "append", pool_size) as (_, pool):
        store = EventStore(pool)
        for writers in plan.append_writers:
            progress(f"append: {writers} writers x 1 event, {plan.append_seconds:g}s")
            figures[f"writers_{writers}"] = await append_run(
                store, ctx, label=f"w{writers}", writers=writers, per_append=1,
                seconds=plan.append_seconds,
            )  # fmt: skip
        size, writers = plan.batched_events_per_append, plan.batched_writers
        progress(f"append: {writers} writers x {size} events, {plan.append_seconds:g}s")
        figures[f"batched_{size}_writers_{writers}"] = await append_run(
            store, ctx, label=f"b{writers}", writers=writers, per_append=size,
            seconds=plan.append_seconds,
        )  # fmt: skip
    figures["pool_size"] = pool_size
    figures["data_bytes"] = len(msgspec.json.encode(make_event(1)))
    return figures


# --- relay ---------------------------------------------------------------------------------


Message = tuple[bytes, bytes]  # key, payload


async def prefill(store: EventStore, ctx: Context, plan: Plan) -> tuple[list[Message], float]:
    """Write plan.relay_events events, one multi-event append per stream; return payloads."""
    per = plan.prefill_events_per_append
    streams = -(-plan.relay_events // per)
    written: list[list[Envelope]] = [[] for _ in range(streams)]

    async def writer(n: int) -> None:
        for s in range(n, streams, plan.prefill_writers):
            count = min(per, plan.relay_events - s * per)
            events = [make_event(s * per + i) for i in range(count)]
            written[s] = await store.append(f"s{s}", STREAM_TYPE, 0, events, context=ctx)

    started = time.perf_counter()
    await asyncio.gather(*(writer(n) for n in range(plan.prefill_writers)))
    elapsed = time.perf_counter() - started
    messages = [(e.stream_id.encode(), encode_envelope(e)) for batch in written for e in batch]
    return messages, elapsed


class _Position(msgspec.Struct):
    stream_id: str
    version: int


_position_decoder = msgspec.json.Decoder(_Position)


async def count_committed(bootstrap: str, topic: str, timeout: float = 60.0) -> tuple[int, int]:
    """(messages, distinct (stream, version)) committed on topic, read read_committed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    count = 0
    seen: set[tuple[str, int]] = set()
    try:
        deadline = time.monotonic() + timeout
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} has no partitions")
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        empty = 0
        while time.monotonic() < deadline:
            batch = await consumer.getmany(*tps, timeout_ms=500, max_records=20_000)
            got = 0
            for records in batch.values():
                for message in records:
                    position = _position_decoder.decode(message.value)
                    seen.add((position.stream_id, position.version))
                got += len(records)
            count += got
            if all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                break
            # Nothing but transaction markers left before the end offsets.
            empty = empty + 1 if got == 0 else 0
            if empty >= 3:
                break
    finally:
        await consumer.stop()
    return count, len(seen)


async def bench_relay(
    infra: Infra, plan: Plan, batch_size: int
) -> tuple[dict[str, Any], list[Message], str]:
    """Pre-fill an outbox, drain it with OutboxRelay, count what reached Kafka."""
    ctx = bench_context("relay")
    await ensure_topics(infra.bootstrap, [ctx.topic], partitions=PARTITIONS)
    async with fresh_schema(infra.dsn, "relay", plan.prefill_writers) as (schema, pool):
        progress(f"relay batch {batch_size}: pre-filling {plan.relay_events} events")
        messages, prefill_s = await prefill(EventStore(pool), ctx, plan)
        outbox_rows = await pool.fetchval("SELECT count(*) FROM outbox")
        progress(f"relay batch {batch_size}: draining to {ctx.topic}")
        signal = OutboxSignal(schema)
        relay = OutboxRelay(
            infra.dsn, schema, infra.bootstrap, signal=signal, batch_size=batch_size
        )
        marks: dict[str, float] = {}

        async def mark_leading() -> None:
            await relay.leading.wait()
            marks["leading"] = time.perf_counter()

        started = time.perf_counter()
        task = asyncio.create_task(relay.run())
        marker = asyncio.create_task(mark_leading())
        try:
            await until_drained(pool, task, started, 180)
            drained = time.perf_counter()
        finally:
            for t in (task, marker):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await signal.close()
        relay_id = relay.relay_id
    progress(f"relay batch {batch_size}: counting {ctx.topic}")
    verified, unique = await count_committed(infra.bootstrap, ctx.topic)
    leading = marks.get("leading", started)
    total_s = drained - started
    publishing_s = drained - leading
    figures = {
        "topic": ctx.topic,
        "partitions": PARTITIONS,
        "batch_size": batch_size,
        "events": plan.relay_events,
        "outbox_rows": int(outbox_rows),
        "prefill_s": round(prefill_s, 2),
        "prefill_events_per_s": round(plan.relay_events / prefill_s, 1),
        "prefill_events_per_append": plan.prefill_events_per_append,
        "seconds": round(total_s, 2),
        "seconds_to_leading": round(leading - started, 2),
        "events_per_s": round(plan.relay_events / total_s, 1),
        "events_per_s_publishing": round(plan.relay_events / publishing_s, 1),
        "verified_count": verified,
        "verified_unique": unique,
        "delivered": verified == plan.relay_events and unique == plan.relay_events,
    }
    return figures, messages, relay_id


# --- relay CPU per event -------------------------------------------------------------------


@dataclass(frozen=True)
class RelayCpuPlan:
    """The relay alone, draining an outbox shaped like a scheduling run's."""

    events: int = 100_000
    batch_size: int = Settings.relay_batch_size  # the services' default
    # Every row its own key, as a scheduling run's appointments: the partition cache
    # (the prefill above repeats one key 100 times) helps nothing here.
    rows_per_transaction: int = 1000  # the run commits its bookings in bulk


async def prefill_outbox(pool: asyncpg.Pool, ctx: Context, plan: RelayCpuPlan) -> None:
    """Write plan.events outbox rows (and no events: the relay reads only the outbox),
    rows_per_transaction a transaction, each with a key of its own."""
    for start in range(0, plan.events, plan.rows_per_transaction):
        count = min(plan.rows_per_transaction, plan.events - start)
        records = []
        for seq in range(start, start + count):
            stream = f"appointment-{uuid.uuid4()}"
            envelope = ctx.envelope(
                make_event(seq), stream_id=stream, stream_type=STREAM_TYPE, version=1
            )
            records.append((ctx.topic, stream, encode_envelope(envelope)))
        async with pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "outbox", records=records, columns=["topic", "key", "payload"]
            )


async def bench_relay_cpu(infra: Infra, plan: RelayCpuPlan) -> dict[str, Any]:
    """Drain a pre-filled outbox with OutboxRelay (with metrics, as in a service) and
    read the CPU seconds it took: this process (the relay; the drain check every 50 ms
    is the rest), PostgreSQL (postmaster and backends) and Kafka."""
    from immunreg.observability.metrics import Metrics
    from loadtests.watch import cpu_seconds, server_groups

    ctx = bench_context("relaycpu")
    await ensure_topics(infra.bootstrap, [ctx.topic], partitions=PARTITIONS)
    groups = {"relay": [os.getpid()], **server_groups()}
    async with fresh_schema(infra.dsn, "relaycpu", 2) as (schema, pool):
        progress(f"relay cpu: pre-filling {plan.events} outbox rows")
        await prefill_outbox(pool, ctx, plan)
        await pool.execute("ANALYZE outbox")
        signal = OutboxSignal(schema)
        relay = OutboxRelay(
            infra.dsn,
            schema,
            infra.bootstrap,
            signal=signal,
            metrics=Metrics(f"relaycpu_{uuid.uuid4().hex[:8]}"),
            batch_size=plan.batch_size,
        )
        task = asyncio.create_task(relay.run())
        try:
            await asyncio.wait_for(relay.leading.wait(), 60)
            progress(f"relay cpu: leading, draining to {ctx.topic}")
            before, started = cpu_seconds(groups, {"postgresql"}), time.perf_counter()
            await until_drained(pool, task, started, 300)
            after, drained = cpu_seconds(groups, {"postgresql"}), time.perf_counter()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await signal.close()
    verified, unique = await count_committed(infra.bootstrap, ctx.topic)
    seconds = drained - started
    cpu = {name: after[name] - before[name] for name in groups}
    return {
        "topic": ctx.topic,
        "events": plan.events,
        "batch_size": plan.batch_size,
        "rows_per_transaction": plan.rows_per_transaction,
        "seconds": round(seconds, 2),
        "events_per_s": round(plan.events / seconds, 1),
        "cpu_s": {name: round(used, 2) for name, used in cpu.items()},
        "cpu_us_per_event": {
            name: round(used / plan.events * 1e6, 1) for name, used in cpu.items()
        },
        "verified_count": verified,
        "verified_unique": unique,
        "delivered": verified == plan.events and unique == plan.events,
    }


# --- bare producer ------------------------------------------------------------------------


async def end_offset_total(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


def relay_like_headers(relay_id: str, n: int) -> list[tuple[str, bytes]]:
    """Headers the size of the relay's: a position and the relay id."""
    return [
        (POSITION_HEADER, encode_position((1_000_000 + n // 100, n + 1))),
        (RELAY_HEADER, relay_id.encode()),
    ]


async def produce(
    infra: Infra,
    topic: str,
    messages: Sequence[Message],
    relay_id: str,
    *,
    chunk: int,
    transactional_id: str | None = None,
) -> float:
    """Send every message; return the seconds from the first send to the last ack."""
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=RELAY_MAX_BATCH_BYTES,
        transactional_id=transactional_id,
    )
    await producer.start()
    try:
        started = time.perf_counter()
        for first in range(0, len(messages), chunk):
            if transactional_id is not None:
                await producer.begin_transaction()
            futures = []
            for n in range(first, min(first + chunk, len(messages))):
                key, value = messages[n]
                futures.append(
                    await producer.send(
                        topic,
                        value=value,
                        key=key,
                        partition=partition_for(key, PARTITIONS),
                        headers=relay_like_headers(relay_id, n),
                    )
                )
            await asyncio.gather(*futures)
            if transactional_id is not None:
                await producer.commit_transaction()
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def bench_producer(
    infra: Infra, plan: Plan, messages: Sequence[Message], relay_id: str
) -> dict[str, Any]:
    plain = f"bench-producer-{uuid.uuid4().hex[:10]}"
    transactional = f"bench-producer-tx-{uuid.uuid4().hex[:10]}"
    await ensure_topics(infra.bootstrap, [plain, transactional], partitions=PARTITIONS)
    n = len(messages)
    progress(f"kafka producer: {n} messages, idempotent")
    plain_s = await produce(infra, plain, messages, relay_id, chunk=plan.producer_chunk)
    progress(f"kafka producer: {n} messages, {plan.transaction_size} per transaction")
    tx_s = await produce(
        infra, transactional, messages, relay_id, chunk=plan.transaction_size,
        transactional_id=f"bench-tx-{uuid.uuid4().hex[:10]}",
    )  # fmt: skip
    plain_end = await end_offset_total(infra.bootstrap, plain)
    tx_end = await end_offset_total(infra.bootstrap, transactional)
    return {
        "messages": n,
        "avg_payload_bytes": round(sum(len(v) for _, v in messages) / max(1, n), 1),
        "acks": "all",
        "linger_ms": 2,
        "max_batch_size": RELAY_MAX_BATCH_BYTES,
        "idempotent": {
            "topic": plain,
            "gather_chunk": plan.producer_chunk,
            "seconds": round(plain_s, 2),
            "msgs_per_s": round(n / plain_s, 1),
            "end_offsets": plain_end,
            "delivered": plain_end == n,
        },
        "transactional": {
            "topic": transactional,
            "messages_per_transaction": plan.transaction_size,
            "seconds": round(tx_s, 2),
            "msgs_per_s": round(n / tx_s, 1),
            # Messages plus one commit marker per partition per transaction.
            "end_offsets": tx_end,
            "delivered": tx_end >= n,
        },
    }


# --- the run -------------------------------------------------------------------------------


async def run(infra: Infra, plan: Plan) -> tuple[dict[str, Any], str]:
    started = time.perf_counter()
    conn = await asyncpg.connect(infra.dsn)
    try:
        postgres = str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
    figures: dict[str, Any] = {"mode": plan.mode}
    figures["pgbench_raw_insert"] = await bench_pgbench(infra, plan)
    figures["eventstore_append"] = await bench_append(infra, plan)

    relay: dict[str, Any] = {}
    messages: list[Message] = []
    relay_id = ""
    for i, size in enumerate(plan.relay_batch_sizes):
        spent = time.perf_counter() - started
        if i > 0 and spent > plan.budget_seconds:
            relay[f"batch_{size}"] = {"skipped": f"time budget ({spent:.0f}s spent)"}
            continue
        relay[f"batch_{size}"], got, rid = await bench_relay(infra, plan, size)
        if not messages:
            messages, relay_id = got, rid
        if i == 0:
            figures["kafka_producer_baseline"] = await bench_producer(
                infra, plan, messages, relay_id
            )
    figures["relay"] = relay

    first = relay[f"batch_{plan.relay_batch_sizes[0]}"]
    tx = figures["kafka_producer_baseline"]["transactional"]
    pg2 = figures["pgbench_raw_insert"]["two_rows"]
    app8 = figures["eventstore_append"].get("writers_8")
    figures["ratios"] = {
        # Relay while leading (producer started, recovery done) vs the same sends bare.
        "relay_vs_kafka_transactional": round(
            first["events_per_s_publishing"] / tx["msgs_per_s"], 3
        ),
        # Single-event appends with 8 writers vs pgbench's 8 clients writing event + outbox row.
        "append_vs_pgbench_2row": round(app8["appends_per_s"] / pg2["tps"], 3) if app8 else None,
    }
    figures["total_seconds"] = round(time.perf_counter() - started, 1)
    return figures, postgres


def delivered(figures: dict[str, Any]) -> bool:
    runs = [r for r in figures["relay"].values() if "skipped" not in r]
    baseline = figures["kafka_producer_baseline"]
    return all(r["delivered"] for r in runs) and all(
        baseline[k]["delivered"] for k in ("idempotent", "transactional")
    )


def _whole(value: float) -> str:
    """A figure rounded to a whole number, with thousands separators."""
    return f"{value:,.0f}"


def summary(figures: dict[str, Any], postgres: str) -> str:
    pg = figures["pgbench_raw_insert"]
    app = figures["eventstore_append"]
    kafka = figures["kafka_producer_baseline"]
    rows: list[tuple[str, str, str]] = []
    for key, label in (("one_row", "1 row/tx"), ("two_rows", "2 rows/tx")):
        r = pg[key]
        rows.append((
            f"pgbench {label} (c{pg['clients']} j{pg['threads']} {pg['duration_s']}s)",
            f"{_whole(r['tps'])} tps",
            f"{_whole(r['rows_per_s'])} rows/s, avg {r['latency_avg_ms']} ms",
        ))  # fmt: skip
    for r in app.values():
        if not isinstance(r, dict):
            continue
        rows.append((
            f"append {r['writers']} writers x {r['events_per_append']} event(s)",
            f"{_whole(r['appends_per_s'])} appends/s",
            f"{_whole(r['events_per_s'])} ev/s, p50/p95/p99 "
            f"{r['p50_ms']:.1f}/{r['p95_ms']:.1f}/{r['p99_ms']:.1f} ms",
        ))  # fmt: skip
    for key, r in figures["relay"].items():
        if "skipped" in r:
            rows.append((f"relay {key}", "skipped", r["skipped"]))
            continue
        rows.append((
            f"relay batch {r['batch_size']} ({_whole(r['events'])} events)",
            f"{_whole(r['events_per_s'])} ev/s",
            f"{_whole(r['events_per_s_publishing'])} ev/s once leading, "
            f"verified {_whole(r['verified_count'])}/{_whole(r['events'])}",
        ))  # fmt: skip
        rows.append((
            f"  outbox pre-fill ({r['prefill_events_per_append']}/append)",
            f"{_whole(r['prefill_events_per_s'])} ev/s",
            "",
        ))  # fmt: skip
    for key, label in (("idempotent", "idempotent"), ("transactional", "transactional x500")):
        r = kafka[key]
        rows.append((
            f"kafka producer {label}",
            f"{_whole(r['msgs_per_s'])} msg/s",
            f"{_whole(kafka['messages'])} msgs of ~{kafka['avg_payload_bytes']:.0f} B",
        ))  # fmt: skip
    for key, value in figures["ratios"].items():
        rows.append((key, f"{value}", ""))
    width = max(len(r[0]) for r in rows)
    mid = max(len(r[1]) for r in rows)
    head = (
        f"foundation benchmark ({figures['mode']}): {os.cpu_count()} cores, "
        f"PostgreSQL {postgres.split(maxsplit=1)[0]}, {figures['total_seconds']}s"
    )
    lines = [head, "-" * len(head)]
    lines += [f"{a:<{width}}  {b:>{mid}}  {c}".rstrip() for a, b, c in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.foundation", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases, 10k relay events")
    parser.add_argument(
        "--relay-cpu",
        action="store_true",
        help="only the relay, one key per row: CPU per event of it, PostgreSQL and Kafka",
    )
    parser.add_argument("--events", type=int, default=RelayCpuPlan.events)
    parser.add_argument("--batch-size", type=int, default=RelayCpuPlan.batch_size)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from immunreg.localinfra import up

    endpoints = up()
    infra = Infra(endpoints["DATABASE_URL"], endpoints["KAFKA_BOOTSTRAP_SERVERS"])
    if args.relay_cpu:
        cpu_plan = RelayCpuPlan(events=args.events, batch_size=args.batch_size)
        result = asyncio.run(bench_relay_cpu(infra, cpu_plan))
        record(f"{SECTION}_relay_cpu", result)
        print(json.dumps(result, indent=2))
        return 0 if result["delivered"] else 1
    figures, postgres = asyncio.run(run(infra, plan))
    ok = delivered(figures)
    figures["delivered"] = ok
    record(SECTION, figures, postgres=postgres)
    print(summary(figures, postgres))
    if not ok:
        print("NOT DELIVERED: Kafka does not hold every message; see bench/results.json")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
