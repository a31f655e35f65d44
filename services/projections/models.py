"""Read models side by side: which one answers, rebuilding one, swapping it in.

- The service's schema (`projections`) holds `read_models`, the pointer: every
  model schema and its status; exactly one is `active`.
- A model is a schema `<service schema>_m<yyyymmddhhmmss><hex>` with the
  event-store tables and model.sql. Its consumer group is its schema name, and
  its positions and processed event ids live in it, written in the same
  transactions as its rows.
- `rebuild` (`immunreg projections rebuild`) makes a `building` model beside
  the active one and consumes every topic from offset 0 with its new group,
  until its positions reach the end offsets taken when it started (and then,
  briefly, those taken once it got there). It stops its consumer and, in one
  transaction, retires the active model and activates the new one. After a
  grace period it drops the retired schema.
- The live service's `Follower` reads the pointer every second. When the
  active model changes it starts a consumer on the new one (which goes on from
  the positions the rebuild stored), then stops the old consumer: the service
  follows a swap without a restart. Every answer is read from one model, in
  one read-only snapshot, so it never mixes two models.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from immunreg.contracts.topics import dlq_topic
from immunreg.eventstore.database import (
    Connection,
    apply_schema,
    check_schema_name,
    create_pool,
)
from immunreg.eventstore.locks import lock_for_transaction
from immunreg.eventstore.relay import OutboxRelay
from immunreg.eventstore.signal import OutboxSignal
from immunreg.messaging.consumer import EventConsumer
from immunreg.messaging.topics import ensure_topics
from immunreg.observability.metrics import Metrics
from immunreg.tasks import stop_tasks

from .handlers import Sources, build_reactions

log = logging.getLogger(__name__)

CONTROL_SQL = Path(__file__).with_name("schema.sql")
MODEL_SQL = Path(__file__).with_name("model.sql")

# The tables of a model that hold its answers (compared by the rebuild test).
MODEL_TABLES = (
    "doses",
    "appointments",
    "citizens",
    "sites",
    "site_day_capacity",
    "stock_levels",
    "adverse_events",
    "certificates",
    "daily_doses",
    "site_daily_doses",
    "booking_days",
    "municipality_queue",
    "waste_daily",
    "model_state",
)


def model_name(control: str, now: datetime | None = None) -> str:
    """A new model schema's name: the service schema, `_m`, a UTC timestamp and 4 hex."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    return check_schema_name(f"{control}_m{stamp}{secrets.token_hex(2)}")


async def prepare_control(pool: asyncpg.Pool, control: str) -> None:
    """The service schema with its `read_models` table (what create_app also applies)."""
    await apply_schema(pool, control, [CONTROL_SQL])


async def create_model(dsn: str, control_conn: Connection, control: str, status: str) -> str:
    """A new, empty model schema, registered in `read_models` with `status`."""
    schema = model_name(control)
    await control_conn.execute(
        "INSERT INTO read_models (schema_name, status) VALUES ($1, $2)", schema, status
    )
    pool = await create_pool(dsn, schema, min_size=1, max_size=1)
    try:
        await apply_schema(pool, schema, [MODEL_SQL])
    finally:
        await pool.close()
    return schema


async def active_model(control_pool: asyncpg.Pool) -> str | None:
    """The schema of the model that answers now."""
    found: str | None = await control_pool.fetchval(
        "SELECT schema_name FROM read_models WHERE status = 'active'"
    )
    return found


async def ensure_active_model(dsn: str, control_pool: asyncpg.Pool, control: str) -> str:
    """The active model, creating the first one (empty: it replays from offset 0)."""
    async with control_pool.acquire() as conn, conn.transaction():
        await lock_for_transaction(conn, f"models:{control}")
        schema: str | None = await conn.fetchval(
            "SELECT schema_name FROM read_models WHERE status = 'active'"
        )
        if schema is None:
            schema = await create_model(dsn, conn, control, "building")
            await _activate(conn, schema)
        return schema


async def _activate(conn: Connection, schema: str) -> str | None:
    retired: str | None = await conn.fetchval(
        "UPDATE read_models SET status = 'retired', retired_at = now() "
        "WHERE status = 'active' RETURNING schema_name"
    )
    updated = await conn.execute(
        "UPDATE read_models SET status = 'active', activated_at = now() "
        "WHERE schema_name = $1 AND status = 'building'",
        schema,
    )
    if updated != "UPDATE 1":
        raise RuntimeError(f"read model {schema} is not being built; not activated")
    return retired


async def activate(control_pool: asyncpg.Pool, schema: str) -> str | None:
    """Swap: retire the active model and activate `schema`, atomically. Returns the retired."""
    async with control_pool.acquire() as conn, conn.transaction():
        control = await conn.fetchval("SELECT current_schema()")
        await lock_for_transaction(conn, f"models:{control}")
        return await _activate(conn, schema)


async def drop_model(control_pool: asyncpg.Pool, schema: str, status: str = "dropped") -> None:
    """Drop a model's schema (never the active one) and note it in `read_models`."""
    check_schema_name(schema)
    async with control_pool.acquire() as conn, conn.transaction():
        current = await conn.fetchval(
            "SELECT status FROM read_models WHERE schema_name = $1 FOR UPDATE", schema
        )
        if current == "active":
            raise RuntimeError(f"{schema} is the active read model; not dropped")
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.execute(
            "UPDATE read_models SET status = $2 WHERE schema_name = $1", schema, status
        )


async def drop_all(dsn: str, control: str) -> None:
    """Drop every model of a service schema and the schema itself (tests, benchmarks)."""
    check_schema_name(control)
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{control}.read_models")
        names = (
            [r[0] for r in await conn.fetch(f"SELECT schema_name FROM {control}.read_models")]
            if exists
            else []
        )
        # Sessions left behind by a stuck shutdown would block DROP SCHEMA forever:
        # end them (pools name their sessions after their schema) and bound the wait.
        await conn.execute("SET lock_timeout = '30s'")
        for schema in [*names, control]:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                "AND application_name LIKE $1",
                schema.replace("_", "\\_") + "%",
            )
        for schema in names:
            await conn.execute(f"DROP SCHEMA IF EXISTS {check_schema_name(schema)} CASCADE")
        await conn.execute(f"DROP SCHEMA IF EXISTS {control} CASCADE")
    finally:
        await conn.close()


# --- the live model --------------------------------------------------------------------


@dataclass
class LiveModel:
    """A model the service reads from, with its consumer (and relay for dead letters)."""

    schema: str
    pool: asyncpg.Pool
    consumer: EventConsumer
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Follower:
    """Keeps the service on the active model: consumes into it, reads from it."""

    def __init__(
        self,
        *,
        dsn: str,
        bootstrap: str,
        control_pool: asyncpg.Pool,
        control: str,
        sources: Sources,
        metrics: Metrics | None = None,
        interval: float = 1.0,
        batch_size: int = 1000,
        max_attempts: int = 3,
        backoff: float = 0.2,
    ) -> None:
        self.dsn = dsn
        self.bootstrap = bootstrap
        self.control_pool = control_pool
        self.control = control
        self.sources = sources
        self.metrics = metrics
        self.interval = interval
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.current: LiveModel | None = None

    async def follow(self) -> None:
        """Attach to the active model if it is not the one held (creating the first)."""
        schema = await active_model(self.control_pool)
        if schema is None:
            schema = await ensure_active_model(self.dsn, self.control_pool, self.control)
        if self.current is not None and self.current.schema == schema:
            return
        attached = await self._attach(schema)
        previous, self.current = self.current, attached
        log.info(
            "following read model",
            extra={"schema": schema, "previous": previous.schema if previous else None},
        )
        if previous is not None:
            await self._detach(previous)

    async def run(self) -> None:
        """Follow the pointer until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following the active read model failed; trying again")

    def ready(self) -> bool:
        """Whether the service follows a model whose consumer has joined its group."""
        return self.current is not None and self.current.consumer.joined.is_set()

    async def close(self) -> None:
        """Stop consuming and close the model's pool."""
        current, self.current = self.current, None
        if current is not None:
            await self._detach(current)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Connection]:
        """A connection to the active model in a read-only, repeatable-read transaction."""
        for _ in range(3):
            model = self.current
            if model is None:
                raise RuntimeError("no read model is attached yet")
            try:
                conn = await model.pool.acquire()
            except asyncpg.InterfaceError:
                if model is not self.current:
                    continue  # swapped while acquiring: read the new one
                raise
            try:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    yield conn
            finally:
                await model.pool.release(conn)
            return
        raise RuntimeError("the read model kept changing")

    async def _attach(self, schema: str) -> LiveModel:
        pool = await create_pool(self.dsn, schema, min_size=1, max_size=8)
        try:
            await apply_schema(pool, schema, [MODEL_SQL])
            signal = OutboxSignal(schema)
            consumer = EventConsumer(
                pool,
                self.bootstrap,
                group_id=schema,
                reactions=build_reactions(self.sources),
                metrics=self.metrics,
                signal=signal,
                max_attempts=self.max_attempts,
                backoff=self.backoff,
                batch_size=self.batch_size,
            )
            # Dead letters go through the model's outbox; this relay publishes them.
            relay = OutboxRelay(self.dsn, schema, self.bootstrap, signal=signal, poll_interval=2.0)
        except BaseException:
            await pool.close()
            raise
        return LiveModel(
            schema,
            pool,
            consumer,
            [asyncio.create_task(consumer.run()), asyncio.create_task(relay.run())],
        )

    async def _detach(self, model: LiveModel) -> None:
        await stop_tasks(model.tasks)
        try:
            await asyncio.wait_for(model.pool.close(), timeout=10)
        except TimeoutError:
            model.pool.terminate()


# --- rebuilding ------------------------------------------------------------------------


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild did, and how fast."""

    schema: str
    retired: str | None
    events: int  # offsets replayed in the first pass (from the beginning to the end at start)
    seconds: float  # first pass: empty model to caught up with the end at start
    total_seconds: float  # until the swap
    dropped: bool

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


Offsets = dict[TopicPartition, int]


async def topic_offsets(bootstrap: str, topics: list[str]) -> tuple[Offsets, Offsets]:
    """(beginning, end) offsets of every partition of `topics`, as read_committed sees them."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    try:
        await consumer.start()
        partitions: list[TopicPartition] = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            for _ in range(50):
                if found:
                    break
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(topic)
                if not found:
                    await asyncio.sleep(0.1)
            partitions += [TopicPartition(topic, p) for p in sorted(found or ())]
        if not partitions:
            return {}, {}
        return (
            await consumer.beginning_offsets(partitions),
            await consumer.end_offsets(partitions),
        )
    finally:
        await consumer.stop()


async def stored_positions(pool: asyncpg.Pool, group: str) -> Offsets:
    """Where a group stands, per partition, as stored with its model."""
    rows = await pool.fetch(
        "SELECT topic, partition, next_offset FROM consumer_positions WHERE group_id = $1", group
    )
    return {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def _only_markers_left(
    bootstrap: str, behind: dict[TopicPartition, tuple[int, int]]
) -> set[TopicPartition]:
    """Partitions whose offsets from the stored position to the end hold no event.

    A transactional producer (the relay) ends each transaction with a commit
    marker, which takes an offset but is never delivered: a consumer that has
    applied everything can stand one offset (or more, after aborts) short of
    the end offset.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    done: set[TopicPartition] = set()
    try:
        await consumer.start()
        consumer.assign(list(behind))
        for tp, (position, _) in behind.items():
            consumer.seek(tp, position)
        seen: set[TopicPartition] = set()
        records = await consumer.getmany(timeout_ms=1000)
        for tp, messages in records.items():
            if any(m.offset < behind[tp][1] for m in messages):
                seen.add(tp)
        for tp, (_, end) in behind.items():
            if tp not in seen and await consumer.position(tp) >= end:
                done.add(tp)
    finally:
        await consumer.stop()
    return done


async def wait_caught_up(
    pool: asyncpg.Pool,
    group: str,
    bootstrap: str,
    beginnings: Offsets,
    ends: Offsets,
    *,
    progress: Callable[[int, int], None] | None = None,
    poll: float = 0.25,
) -> None:
    """Wait until the group's stored positions reach `ends` (or only markers remain)."""
    total = sum(ends[tp] - beginnings.get(tp, 0) for tp in ends)
    finished: set[TopicPartition] = set()
    last: Offsets = {}
    stalled_since = time.monotonic()
    while True:
        stored = await stored_positions(pool, group)
        behind = {
            tp: (stored.get(tp, beginnings.get(tp, 0)), end)
            for tp, end in ends.items()
            if tp not in finished and stored.get(tp, beginnings.get(tp, 0)) < end
        }
        if progress is not None:
            done = sum(
                min(stored.get(tp, beginnings.get(tp, 0)), end) - beginnings.get(tp, 0)
                for tp, end in ends.items()
            )
            progress(done, total)
        if not behind:
            return
        if stored != last:
            last, stalled_since = stored, time.monotonic()
        elif time.monotonic() - stalled_since > 1.0:
            finished |= await _only_markers_left(bootstrap, behind)
            stalled_since = time.monotonic()
            continue
        await asyncio.sleep(poll)


async def rebuild(
    dsn: str,
    bootstrap: str,
    control: str,
    sources: Sources,
    *,
    batch_size: int = 5000,
    grace: float = 10.0,
    keep_old: bool = False,
    partitions: int = 3,
    metrics: Metrics | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildReport:
    """Build a new model from offset 0 beside the active one, then swap it in."""
    control_pool = await create_pool(dsn, control, min_size=1, max_size=2)
    try:
        await prepare_control(control_pool, control)
        topics = sources.topics()
        await ensure_topics(bootstrap, [*topics, *map(dlq_topic, topics)], partitions)
        beginnings, ends = await topic_offsets(bootstrap, topics)
        async with control_pool.acquire() as conn:
            schema = await create_model(dsn, conn, control, "building")
        log.info("rebuilding", extra={"schema": schema, "events": sum(ends.values())})
        started = time.perf_counter()
        pool = await create_pool(dsn, schema, min_size=1, max_size=4)
        try:
            consumer = EventConsumer(
                pool,
                bootstrap,
                group_id=schema,
                reactions=build_reactions(sources),
                metrics=metrics,
                batch_size=batch_size,
            )
            task = asyncio.create_task(consumer.run())
            try:
                await wait_caught_up(pool, schema, bootstrap, beginnings, ends, progress=progress)
                first_pass = time.perf_counter() - started
                # What arrived during the replay: usually a short second pass.
                beginnings_now, ends_now = await topic_offsets(bootstrap, topics)
                await wait_caught_up(pool, schema, bootstrap, beginnings_now, ends_now)
            finally:
                await stop_tasks([task])
        except BaseException:
            await pool.close()
            with contextlib.suppress(Exception):
                await drop_model(control_pool, schema, status="failed")
            raise
        await pool.close()
        retired = await activate(control_pool, schema)
        total_seconds = time.perf_counter() - started
        dropped = False
        if retired is not None and not keep_old:
            # Give live services time to notice the swap and stop their consumers.
            await asyncio.sleep(grace)
            await drop_model(control_pool, retired)
            dropped = True
        return RebuildReport(
            schema=schema,
            retired=retired,
            events=sum(ends[tp] - beginnings.get(tp, 0) for tp in ends),
            seconds=first_pass,
            total_seconds=total_seconds,
            dropped=dropped,
        )
    finally:
        await control_pool.close()
